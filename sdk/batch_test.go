package sdk

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"
)

func TestBatchBody(t *testing.T) {
	for _, tt := range []struct {
		name   string
		events []string
	}{
		{"one event", []string{`{"a":1}`}},
		{"three events", []string{`{"a":1}`, `{"b":"two"}`, `{}`}},
		{"a large one", []string{`{"x":"` + string(bytes.Repeat([]byte("x"), 10000)) + `"}`, `{"y":2}`}},
	} {
		var events [][]byte
		for _, ev := range tt.events {
			events = append(events, []byte(ev))
		}
		want := `{"events":[` + string(bytes.Join(events, []byte(","))) + `]}`
		if n := bodySize(events); n != len(want) {
			t.Errorf("%s: bodySize = %d, want %d", tt.name, n, len(want))
		}
		for _, chunk := range []int{1, 2, 7, 4096} {
			var bs batches
			body := bs.body(events)
			var got []byte
			p := make([]byte, chunk)
			for {
				n, err := body.Read(p)
				got = append(got, p[:n]...)
				if err == io.EOF {
					break
				}
				if err != nil || n == 0 {
					t.Fatalf("%s, reads of %d: Read = %d, %v", tt.name, chunk, n, err)
				}
			}
			if string(got) != want {
				t.Errorf("%s, reads of %d: body = %.80s..., want %.80s...", tt.name, chunk, got, want)
			}
			if n, err := body.Read(p); n != 0 || err != io.EOF {
				t.Errorf("%s: Read after the end = %d, %v; want 0, EOF", tt.name, n, err)
			}
			body.Close()
			body.Close()
			if n := bs.open.Load(); n != 0 {
				t.Errorf("%s: %d bodies open after Close, twice; want 0", tt.name, n)
			}
		}
	}
}

// TestBatchesReuse: a batch's JSON buffers are reused by the next batch
// only when every body made from them is closed, and then without
// allocating.
func TestBatchesReuse(t *testing.T) {
	recs := func(first int) [][]byte {
		var out [][]byte
		for i := range 50 {
			rec, err := appendRecord(nil, int64(first+i), &outEvent{typ: "track", unitType: "customer", unitID: fmt.Sprint(first + i), event: "e"})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, rec)
		}
		return out
	}
	unitIDs := func(events [][]byte) string {
		var ids []string
		for _, ev := range events {
			var e struct {
				UnitID string `json:"unit_id"`
			}
			if err := json.Unmarshal(ev, &e); err != nil {
				t.Fatalf("%v: %s", err, ev)
			}
			ids = append(ids, e.UnitID)
		}
		return fmt.Sprint(ids)
	}
	var bs batches
	a := bs.encode(recs(0))
	wantA := unitIDs(a)
	body := bs.body(a) // a transport still holds it
	b := bs.encode(recs(1000))
	if got := unitIDs(a); got != wantA {
		t.Fatalf("a batch whose body is open was written over: unit ids %.40s..., want %.40s...", got, wantA)
	}
	body.Close()
	bs.body(b).Close()
	c := bs.encode(recs(2000))
	if &c[0][0] != &b[0][0] {
		t.Error("the buffers were not reused once every body was closed")
	}
	next := recs(3000)
	if n := testing.AllocsPerRun(100, func() { bs.encode(next) }); n != 0 {
		t.Errorf("encode with its buffers free: %v allocs, want 0", n)
	}
}

// TestTransportClosesBodies: net/http closes each body it is given, so a
// client's batches do reuse their buffers.
func TestTransportClosesBodies(t *testing.T) {
	c := benchClient(t, benchServer(t, benchConfig), WithBatchSize(100))
	ctx := t.Context()
	for i := range 1000 {
		if err := c.Track(ctx, Unit{CustomerID: fmt.Sprint(i)}, "visit", 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second) // guards a hung test only
	for c.delivery.b.open.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d request bodies still open after every batch was sent", c.delivery.b.open.Load())
		}
		time.Sleep(time.Millisecond)
	}
	if s := c.Stats(); s.Sent != 1000 {
		t.Errorf("sent %d, want 1000", s.Sent)
	}
}
