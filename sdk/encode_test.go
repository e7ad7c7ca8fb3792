package sdk

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
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

func TestAppendEventMatchesEncodingJSON(t *testing.T) {
	id := uuid.MustParse("0190c1f2-7d3a-7c4e-9a1b-2f3e4d5c6b7a")
	ts := time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.FixedZone("CET", 3600))
	nested := map[string]any{"a": []any{1.5, "x", nil, true, map[string]any{"deep": []any{}}}, "n": nil}
	for _, tt := range []struct {
		name string
		ev   outEvent
	}{
		{"exposure", outEvent{typ: "exposure", experiment: "checkout-button", variant: "green", unitType: "customer", unitID: "c-42",
			attributes: map[string]any{"country": "FR", "age": 31.0, "vip": true, "none": nil, "tags": []any{"a", "b"}, "nested": nested}}},
		{"exposure, Go numbers", outEvent{typ: "exposure", experiment: "e", variant: "v", unitType: "device", unitID: "d",
			attributes: map[string]any{"int": 7, "int64": int64(-1 << 60), "uint": uint(3), "f32": float32(0.1), "tiny": 1e-7, "huge": 1e21,
				"neg": -0.0, "number": json.Number("12.50"), "int8": int8(-3), "strs": []string{"x"}, "struct": struct{ A int }{1}}}},
		{"track", outEvent{typ: "track", unitType: "customer", unitID: "c-42", event: "purchase", value: 59.9, hasValue: true,
			properties: map[string]any{"currency": "EUR"}}},
		{"track, zero value", outEvent{typ: "track", unitType: "customer", unitID: "c", event: "visit", hasValue: true}},
		{"identify", outEvent{typ: "identify", unitType: "device", unitID: "d-9", customerID: "c-42"}},
		{"strings to escape", outEvent{typ: "track", unitType: "customer", unitID: "quote\" back\\ nl\n tab\t nul\x00 bell\a é 世 \u2028 bad\xff<>&",
			event: "e", hasValue: true, value: -1.25e-9}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := appendEvent(nil, id, ts, &tt.ev)
			if err != nil {
				t.Fatal(err)
			}
			if want := wireOf(t, id, ts, &tt.ev); !sameJSON(t, got, want) {
				t.Errorf("appendEvent =\n%s\nencoding/json =\n%s", got, want)
			}
		})
	}
}

func TestAppendEventRefusesWhatJSONCannotHold(t *testing.T) {
	self := map[string]any{}
	self["self"] = self
	for _, tt := range []struct {
		name  string
		ev    outEvent
		field string
	}{
		{"NaN attribute", outEvent{typ: "exposure", attributes: map[string]any{"x": math.NaN()}}, "attributes"},
		{"infinite property", outEvent{typ: "track", properties: map[string]any{"x": []any{math.Inf(1)}}}, "properties"},
		{"a channel", outEvent{typ: "track", properties: map[string]any{"c": make(chan int)}}, "properties"},
		{"a map that holds itself", outEvent{typ: "exposure", attributes: self}, "attributes"},
		{"more than 16 KiB", outEvent{typ: "exposure", attributes: map[string]any{"blob": strings.Repeat("b", maxObjectBytes)}}, "attributes"},
	} {
		_, err := appendEvent(nil, uuid.UUID{}, time.Time{}, &tt.ev)
		obj, ok := err.(*errObject)
		if !ok || obj.field != tt.field {
			t.Errorf("%s: error %v, want one on %s", tt.name, err, tt.field)
		}
	}
	if _, err := appendEvent(nil, uuid.UUID{}, time.Time{}, &outEvent{typ: "track", hasValue: true, value: math.NaN()}); err == nil {
		t.Error("a NaN value was encoded")
	}
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
// UTF-8 included).
func FuzzAppendJSONValue(f *testing.F) {
	for _, s := range []string{"", "plain", "\"\\\n\r\t\x00\x1f", "é世\u2028\u2029", "\xff\xfe", "<script>&"} {
		f.Add(s, 1.5)
	}
	f.Add("x", 1e-7)
	f.Add("x", 1e21)
	f.Add("x", -0.0)
	f.Add("x", 123456789.125)
	f.Fuzz(func(t *testing.T, s string, x float64) {
		got := appendString(nil, s)
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
	})
}
