package sdk

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"
)

// wireOf is the event encoding/json sends for ev: the reference the hand
// encoder must match.
func wireOf(t testing.TB, id uuid.UUID, ts time.Time, ev *outEvent) []byte {
	t.Helper()
	w := wireEvent{ID: id, Type: ev.typ, Experiment: ev.experiment, Variant: ev.variant, UnitType: ev.unitType,
		UnitID: ev.unitID, Timestamp: ts.UTC(), Event: ev.event, CustomerID: ev.customerID}
	if ev.hasValue {
		w.Value = &ev.value
	}
	var err error
	if len(ev.attributes) > 0 {
		if w.Attributes, err = json.Marshal(ev.attributes); err != nil {
			t.Fatal(err)
		}
	}
	if len(ev.properties) > 0 {
		if w.Properties, err = json.Marshal(ev.properties); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// sameJSON reports whether a and b decode to the same value, numbers
// compared by their text.
func sameJSON(t testing.TB, a, b []byte) bool {
	t.Helper()
	decode := func(raw []byte) any {
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			t.Fatalf("not JSON: %v: %s", err, raw)
		}
		return v
	}
	return reflect.DeepEqual(decode(a), decode(b))
}

func TestNewEventID(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	seen := map[uuid.UUID]bool{}
	for range 100_000 {
		id := newEventID(now)
		if id.Version() != 7 || id.Variant() != uuid.RFC4122 {
			t.Fatalf("%s: version %d variant %v, want 7 and RFC 4122", id, id.Version(), id.Variant())
		}
		if sec, nsec := id.Time().UnixTime(); time.Unix(sec, nsec).UnixMilli() != now.UnixMilli() {
			t.Fatalf("%s: time %v, want %v", id, time.Unix(sec, nsec).UTC(), now)
		}
		if seen[id] {
			t.Fatalf("%s made twice", id)
		}
		seen[id] = true
	}
	if a, b := newEventID(now), newEventID(now.Add(time.Millisecond)); bytes.Compare(a[:], b[:]) >= 0 {
		t.Errorf("ids of later milliseconds sort first: %s, %s", a, b)
	}
}

// FuzzAppendJSONValue holds appendString and appendFloat to encoding/json:
// the same text for floats, the same decoded string for strings (invalid
// UTF-8 included), from a string or from a record's bytes.
func FuzzAppendJSONValue(f *testing.F) {
	for _, s := range []string{"", "plain", "\"\\\n\r\t\x00\x1f", "é世\u2028\u2029", "\xff\xfe", "<script>&"} {
		f.Add(s, 1.5)
	}
	f.Add("x", 1e-7)
	f.Add("x", 1e-6) // as a float32, below 1e-6 as a float64, yet written 0.000001
	f.Add("x", 1e21)
	f.Add("x", -0.0)
	f.Add("x", 123456789.125)
	f.Fuzz(func(t *testing.T, s string, x float64) {
		got := appendString(nil, s)
		if fromBytes := appendString(nil, []byte(s)); !bytes.Equal(fromBytes, got) {
			t.Fatalf("appendString(%q) = %s from a string, %s from bytes", s, got, fromBytes)
		}
		want, _ := json.Marshal(s)
		var a, b string
		if err := json.Unmarshal(got, &a); err != nil {
			t.Fatalf("appendString(%q) = %s, not a JSON string: %v", s, got, err)
		}
		if err := json.Unmarshal(want, &b); err != nil || a != b {
			t.Fatalf("appendString(%q) decodes to %q, encoding/json's to %q", s, a, b)
		}
		gotF, err := appendFloat(nil, x)
		wantF, werr := json.Marshal(x)
		if (err != nil) != (werr != nil) {
			t.Fatalf("appendFloat(%v) error %v, encoding/json's %v", x, err, werr)
		}
		if err == nil && string(gotF) != string(wantF) {
			t.Fatalf("appendFloat(%v) = %s, encoding/json %s", x, gotF, wantF)
		}
		x32 := float32(x)
		gotF, err = appendFloatBits(nil, float64(x32), 32)
		wantF, werr = json.Marshal(x32)
		if (err != nil) != (werr != nil) {
			t.Fatalf("appendFloatBits(float32 %v) error %v, encoding/json's %v", x32, err, werr)
		}
		if err == nil && string(gotF) != string(wantF) {
			t.Fatalf("appendFloatBits(float32 %v) = %s, encoding/json %s", x32, gotF, wantF)
		}
	})
}
