package ingest

import (
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/live"
)

// benchEvents is the number of events in a benchmark request, the batch
// the SDK and the ingest benchmark (cmd/flywheel bench ingest) send.
const benchEvents = 1000

// benchEvent appends event n as the SDK sends it (sdk/event.go: every field
// set, a nanosecond timestamp), with the mix of cmd/flywheel bench ingest:
// 10% exposures, 85% tracks, 5% identifies, over 200,000 customers. The
// events are about 250 bytes.
func benchEvent(dst []byte, n uint64, t0 time.Time) []byte {
	id := uuid.UUID{0x01, 0x90, 0xc1, 0xf2, 0x7d, 0x3a, 0x7c, 0x4e, 0x9a, 0x1b}
	id[10], id[11], id[12], id[13] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	unit := strconv.AppendUint([]byte("c-"), n*7919%200_000, 10)
	ts := t0.Add(time.Duration(n)*time.Millisecond).AppendFormat(nil, time.RFC3339Nano)
	dst = append(dst, `{"id":"`...)
	dst = append(dst, id.String()...)
	switch n % 20 {
	case 0, 1:
		v := "control"
		if n%3 == 0 {
			v = "green"
		}
		dst = append(dst, `","type":"exposure","experiment":"checkout-button","variant":"`...)
		dst = append(dst, v...)
		dst = append(dst, `","unit_type":"customer","unit_id":"`...)
		dst = append(dst, unit...)
		dst = append(dst, `","timestamp":"`...)
		dst = append(dst, ts...)
		return append(dst, `","attributes":{"country":"FR","device":"mobile","plan":"pro","app_version":"4.12.0"}}`...)
	case 2:
		dst = append(dst, `","type":"identify","unit_type":"device","unit_id":"d-`...)
		dst = strconv.AppendUint(dst, n, 10)
		dst = append(dst, `-5f3a9c2e-ios","timestamp":"`...)
		dst = append(dst, ts...)
		dst = append(dst, `","customer_id":"`...)
		dst = append(dst, unit...)
		return append(dst, `"}`...)
	}
	dst = append(dst, `","type":"track","unit_type":"customer","unit_id":"`...)
	dst = append(dst, unit...)
	dst = append(dst, `","timestamp":"`...)
	dst = append(dst, ts...)
	dst = append(dst, `","event":"purchase","value":`...)
	dst = strconv.AppendFloat(dst, float64(n%10000)/100, 'f', 2, 64)
	return append(dst, `,"properties":{"sku":"A-1042","currency":"EUR","page":"/checkout/confirm","coupon":null}}`...)
}

// benchBodies returns a {"events": [...]} body and an NDJSON body of the
// same n events.
func benchBodies(n int) (jsonBody, ndjson []byte) {
	t0 := testNow.Add(-time.Hour)
	jsonBody = append(jsonBody, `{"events":[`...)
	for i := range n {
		if i > 0 {
			jsonBody = append(jsonBody, ',')
		}
		jsonBody = benchEvent(jsonBody, uint64(i), t0)
		ndjson = append(benchEvent(ndjson, uint64(i), t0), '\n')
	}
	return append(jsonBody, "]}"...), ndjson
}

// ingestPath is a way to decode and validate a request as handleEvents
// does: the current one, or the reference (the path before the fast
// decoder, in reference_test.go), for comparisons in the same run.
type ingestPath struct {
	name     string
	json     func([]byte) ([]RawEvent, error)
	ndjson   func([]byte) ([]RawEvent, error)
	validate func(v *Validator, r RawEvent, now time.Time, st *live.State) (flywheel.Event, *flywheel.Error)
}

var ingestPaths = []ingestPath{
	{"before", refDecodeJSON, refDecodeNDJSON, func(v *Validator, r RawEvent, now time.Time, st *live.State) (flywheel.Event, *flywheel.Error) {
		if r.Err != nil {
			return flywheel.Event{}, r.Err
		}
		return refValidate(v, r.JSON, now, st)
	}},
	{"after", DecodeJSON, DecodeNDJSON, (*Validator).ValidateRaw},
}

// benchIngest decodes and validates body as handleEvents does, and fails
// unless every event is accepted. It reports the time per event and, where
// it can be measured, the CPU time of the process per event (cpu-ns/event),
// which other work on a shared machine disturbs much less.
func benchIngest(b *testing.B, body []byte, decode func([]byte) ([]RawEvent, error), validate func(*Validator, RawEvent, time.Time, *live.State) (flywheel.Event, *flywheel.Error), v *Validator) {
	b.Helper()
	st := testState(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, cpuOK := processCPU()
	for b.Loop() {
		raws, err := decode(body)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range raws {
			if _, bad := validate(v, r, testNow, st); bad != nil {
				b.Fatalf("event %d: %v", r.Index, bad)
			}
		}
		if len(raws) != benchEvents {
			b.Fatalf("%d events, want %d", len(raws), benchEvents)
		}
	}
	if cpu1, ok := processCPU(); ok && cpuOK {
		b.ReportMetric(float64(cpu1-cpu0)/float64(b.N)/benchEvents, "cpu-ns/event")
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchEvents, "ns/event")
}

// BenchmarkIngest is one request of 1,000 events, before and after the
// fast decoder: JSON, NDJSON, and JSON with pseudonymised ids. Divide
// allocs/op by 1,000 for allocations per event.
func BenchmarkIngest(b *testing.B) {
	jsonBody, ndjson := benchBodies(benchEvents)
	ids := NewPseudonymizer("a-secret-key-of-at-least-32-characters!")
	for _, p := range ingestPaths {
		b.Run("JSON/"+p.name, func(b *testing.B) { benchIngest(b, jsonBody, p.json, p.validate, &Validator{}) })
	}
	for _, p := range ingestPaths {
		b.Run("NDJSON/"+p.name, func(b *testing.B) { benchIngest(b, ndjson, p.ndjson, p.validate, &Validator{}) })
	}
	for _, p := range ingestPaths {
		b.Run("JSONPseudonymised/"+p.name, func(b *testing.B) { benchIngest(b, jsonBody, p.json, p.validate, &Validator{IDs: ids}) })
	}
}

// BenchmarkValidate is Validate of one event of the JSON body at a time.
func BenchmarkValidate(b *testing.B) {
	body, _ := benchBodies(benchEvents)
	raws, err := DecodeJSON(body)
	if err != nil {
		b.Fatal(err)
	}
	st := testState(b)
	v := &Validator{}
	for _, p := range []struct {
		name     string
		validate func(*Validator, []byte, time.Time, *live.State) (flywheel.Event, *flywheel.Error)
	}{{"before", refValidate}, {"after", (*Validator).Validate}} {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, bad := p.validate(v, raws[i%len(raws)].JSON, testNow, st); bad != nil {
					b.Fatal(bad)
				}
			}
		})
	}
}
