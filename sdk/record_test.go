package sdk

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// recordJSON records ev at ts behind a few bytes already in the buffer,
// as the queue's blocks hold records, and returns its JSON with id. It
// also checks what every record must hold: its time, a size bound at
// least its JSON's.
func recordJSON(t testing.TB, id uuid.UUID, ts time.Time, ev *outEvent) ([]byte, error) {
	t.Helper()
	prefix := []byte("earlier records")
	b, err := appendRecord(prefix, ts.UnixNano(), ev)
	if string(b[:len(prefix)]) != string(prefix) {
		t.Fatalf("appendRecord wrote over the bytes before it: %q", b[:len(prefix)])
	}
	if err != nil {
		if len(b) != len(prefix) {
			t.Fatalf("appendRecord failed (%v) but left %d bytes behind", err, len(b)-len(prefix))
		}
		return nil, err
	}
	rec := b[len(prefix):]
	if !recordTime(rec).Equal(ts) {
		t.Fatalf("recordTime = %v, want %v", recordTime(rec), ts)
	}
	got := appendRecordJSON(nil, rec, id)
	if len(got) > recordBound(rec) {
		t.Fatalf("the record's JSON takes %d bytes, more than its bound %d: %s", len(got), recordBound(rec), got)
	}
	return got, nil
}

func TestRecordJSONMatchesEncodingJSON(t *testing.T) {
	id := uuid.MustParse("0190c1f2-7d3a-7c4e-9a1b-2f3e4d5c6b7a")
	ts := time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.FixedZone("CET", 3600))
	nested := map[string]any{"a": []any{1.5, "x", nil, true, map[string]any{"deep": []any{}}}, "n": nil}
	for _, tt := range []struct {
		name string
		ev   outEvent
	}{
		{"exposure", outEvent{typ: "exposure", experiment: "checkout-button", variant: "green", unitType: "customer", unitID: "c-42",
			attributes: map[string]any{"country": "FR", "age": 31.0, "vip": true, "new": false, "none": nil, "tags": []any{"a", "b"}, "nested": nested}}},
		{"exposure, Go numbers", outEvent{typ: "exposure", experiment: "e", variant: "v", unitType: "device", unitID: "d",
			attributes: map[string]any{"int": 7, "int64": int64(-1 << 60), "int32": int32(-5), "int16": int16(300), "int8": int8(-3),
				"uint": uint(3), "uint64": uint64(math.MaxUint64), "uint32": uint32(7), "uint16": uint16(9), "uint8": uint8(255),
				"f32": float32(0.1), "f32 huge": float32(3e38), "tiny": 1e-7, "huge": 1e21, "neg": -0.0, "long": -0.0000012345678901234567,
				"number": json.Number("12.50"), "strs": []string{"x"}, "struct": struct{ A int }{1}, "nil map": map[string]any(nil)}}},
		{"track", outEvent{typ: "track", unitType: "customer", unitID: "c-42", event: "purchase", value: 59.9, hasValue: true,
			properties: map[string]any{"currency": "EUR"}}},
		{"track, zero value", outEvent{typ: "track", unitType: "customer", unitID: "c", event: "visit", hasValue: true}},
		{"identify", outEvent{typ: "identify", unitType: "device", unitID: "d-9", customerID: "c-42"}},
		{"strings to escape", outEvent{typ: "track", unitType: "customer", unitID: "quote\" back\\ nl\n tab\t nul\x00 bell\a é 世 \u2028 bad\xff<>&",
			event: "e\x01", hasValue: true, value: -1.25e-9, properties: map[string]any{"k\"\x00\xff": "v\u2029\x1f\xfe"}}},
		{"every field at once", outEvent{typ: "exposure", experiment: "e", variant: "v", unitType: "customer", unitID: "u", event: "x",
			customerID: "c", value: 1e300, hasValue: true, attributes: map[string]any{"a": 1.0}, properties: map[string]any{"p": "q"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := recordJSON(t, id, ts, &tt.ev)
			if err != nil {
				t.Fatal(err)
			}
			if want := wireOf(t, id, ts, &tt.ev); !sameJSON(t, got, want) {
				t.Errorf("appendRecordJSON =\n%s\nencoding/json =\n%s", got, want)
			}
		})
	}
}

func TestAppendRecordRefusesWhatJSONCannotHold(t *testing.T) {
	self := map[string]any{}
	self["self"] = self
	for _, tt := range []struct {
		name  string
		ev    outEvent
		field string
	}{
		{"NaN attribute", outEvent{typ: "exposure", attributes: map[string]any{"x": math.NaN()}}, "attributes"},
		{"infinite float32 property", outEvent{typ: "track", properties: map[string]any{"x": float32(math.Inf(-1))}}, "properties"},
		{"infinite nested property", outEvent{typ: "track", properties: map[string]any{"x": []any{math.Inf(1)}}}, "properties"},
		{"a channel", outEvent{typ: "track", properties: map[string]any{"c": make(chan int)}}, "properties"},
		{"a bad json.Number", outEvent{typ: "track", properties: map[string]any{"n": json.Number("1e")}}, "properties"},
		{"a map that holds itself", outEvent{typ: "exposure", attributes: self}, "attributes"},
		{"more than 16 KiB", outEvent{typ: "exposure", attributes: map[string]any{"blob": strings.Repeat("b", maxObjectBytes)}}, "attributes"},
		{"good attributes, bad properties", outEvent{typ: "exposure", attributes: map[string]any{"a": "b"},
			properties: map[string]any{"x": math.NaN()}}, "properties"},
	} {
		_, err := recordJSON(t, uuid.UUID{}, time.Unix(1, 0), &tt.ev)
		obj, ok := err.(*errObject)
		if !ok || obj.field != tt.field {
			t.Errorf("%s: error %v, want one on %s", tt.name, err, tt.field)
		}
	}
}

// TestObjectSizeLimit: an object of exactly maxObjectBytes of JSON is
// taken, one more byte is refused, whether escaping makes the JSON longer
// than the text or not.
func TestObjectSizeLimit(t *testing.T) {
	const frame = len(`{"blob":""}`)
	for _, tt := range []struct {
		name  string
		value string
		ok    bool
	}{
		{"exactly the limit", strings.Repeat("b", maxObjectBytes-frame), true},
		{"one byte over", strings.Repeat("b", maxObjectBytes-frame+1), false},
		{"escaped, one byte under", strings.Repeat("\n", (maxObjectBytes-frame)/2) + "", true},
		{"escaped, one byte over", strings.Repeat("\n", (maxObjectBytes-frame)/2) + "bb", false},
		{"bytes escaped to six, exactly the limit", strings.Repeat("\x01", (maxObjectBytes-frame-1)/6) + strings.Repeat("b", (maxObjectBytes-frame-1)%6+1), true},
		{"a sixth of the limit, not escaped", strings.Repeat("b", maxObjectBytes/6), true},
	} {
		attrs := map[string]any{"blob": tt.value}
		raw, _ := json.Marshal(attrs)
		if fits := len(raw) <= maxObjectBytes; fits != tt.ok { // the case itself is wrong
			t.Fatalf("%s: encoding/json takes %d bytes, the case wants ok=%v", tt.name, len(raw), tt.ok)
		}
		_, err := recordJSON(t, uuid.UUID{}, time.Unix(1, 0), &outEvent{typ: "exposure", unitType: "customer", unitID: "u", attributes: attrs})
		if (err == nil) != tt.ok {
			t.Errorf("%s (%d bytes of JSON): error %v, want ok=%v", tt.name, len(raw), err, tt.ok)
		}
	}
}

// FuzzRecordObject holds a record's attributes, through its binary form,
// to encoding/json: the same JSON (numbers by their text), refused when
// encoding/json refuses or takes more than maxObjectBytes, and never more
// bytes than the record's bound.
func FuzzRecordObject(f *testing.F) {
	f.Add("country", "FR", 31.0, float32(0.1), int64(-7), uint64(1<<63), true)
	f.Add("", "", 0.0, float32(0), int64(0), uint64(0), false)
	f.Add("k\"\\\x00", "\xff\u2028<>", -0.0000012345678901234567, float32(-3e38), int64(math.MinInt64), uint64(math.MaxUint64), true)
	f.Add("x", strings.Repeat("\x01", 2800), 1e21, float32(1e-7), int64(1), uint64(1), false)
	f.Add("0", "0", 3e21, float32(1e-6), int64(1), uint64(81), false) // found by CI's fuzzing: a float32 of 1e-6
	f.Add("x", "y", math.NaN(), float32(1), int64(1), uint64(1), false)
	f.Add("x", "y", 1.0, float32(math.Inf(1)), int64(1), uint64(1), false)
	f.Fuzz(func(t *testing.T, key, s string, x float64, x32 float32, i int64, u uint64, flag bool) {
		attrs := map[string]any{
			key + "s": s, key + "f": x, key + "g": x32, key + "i": i, key + "u": u, key + "b": flag, key + "n": nil,
			key + "8": int8(i), key + "9": uint16(u), key + "a": []any{s, x, map[string]any{key: i}},
		}
		ev := outEvent{typ: "exposure", experiment: key, variant: s, unitType: "customer", unitID: s, attributes: attrs}
		ts := time.Unix(0, i)
		got, err := recordJSON(t, uuid.UUID{}, ts, &ev)
		raw, werr := json.Marshal(attrs)
		if werr != nil || len(raw) > maxObjectBytes {
			if obj, ok := err.(*errObject); !ok || obj.field != "attributes" {
				t.Fatalf("encoding/json: %d bytes, error %v; appendRecord: %v, want an error on attributes", len(raw), werr, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("appendRecord: %v, encoding/json took it", err)
		}
		if want := wireOf(t, uuid.UUID{}, ts, &ev); !sameJSON(t, got, want) {
			t.Fatalf("appendRecordJSON =\n%s\nencoding/json =\n%s", got, want)
		}
	})
}
