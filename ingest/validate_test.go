package ingest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/live"
)

// testNow is the server clock of the validation tests.
var testNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// testState is a live configuration with one running customer experiment
// and one stopped device experiment.
func testState(tb testing.TB) *live.State {
	tb.Helper()
	st, err := live.Build([]flywheel.Experiment{
		{
			Key: "checkout-button", UnitType: "customer", Traffic: 1, Status: flywheel.StatusRunning,
			Analysis: flywheel.AnalysisFixed,
			Variants: []flywheel.Variant{{Key: "control", Weight: 0.5}, {Key: "green", Weight: 0.5}},
		},
		{
			Key: "onboarding", UnitType: "device", Traffic: 1, Status: flywheel.StatusStopped,
			Analysis: flywheel.AnalysisFixed,
			Variants: []flywheel.Variant{{Key: "a", Weight: 0.5}, {Key: "b", Weight: 0.5}},
		},
	}, 1)
	if err != nil {
		tb.Fatalf("live.Build: %v", err)
	}
	return st
}

const testID = "0190c1f2-7d3a-7c4e-9a1b-2f3e4d5c6b7a"

// event builds the JSON of an event from a base of fields, with changes:
// a nil value removes a field.
func event(base map[string]any, changes map[string]any) []byte {
	m := map[string]any{}
	for k, v := range base {
		m[k] = v
	}
	for k, v := range changes {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	raw, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return raw
}

var (
	baseExposure = map[string]any{
		"id": testID, "type": "exposure", "experiment": "checkout-button", "variant": "green",
		"unit_type": "customer", "unit_id": "c-42", "timestamp": "2026-11-23T10:00:00Z",
		"attributes": map[string]any{"device": "mobile"},
	}
	baseTrack = map[string]any{
		"id": testID, "type": "track", "event": "purchase", "value": 59.90,
		"unit_type": "customer", "unit_id": "c-42", "timestamp": "2026-11-23T10:05:00Z",
		"properties": map[string]any{"sku": "A-1"},
	}
	baseIdentify = map[string]any{
		"id": testID, "type": "identify", "unit_type": "device", "unit_id": "d-9",
		"customer_id": "c-42", "timestamp": "2026-11-23T10:06:00Z",
	}
)

// raw marks a field value to be spliced into the JSON as is.
type raw string

func (r raw) MarshalJSON() ([]byte, error) { return []byte(r), nil }

func TestValidateRejects(t *testing.T) {
	st := testState(t)
	tests := []struct {
		name      string
		json      []byte
		wantField string
	}{
		// The event as a whole.
		{"not an object", []byte(`[1]`), ""},
		{"a string", []byte(`"x"`), ""},
		{"unknown field", event(baseTrack, map[string]any{"revenue": 1}), "revenue"},
		{"wrong type of a field", event(baseTrack, map[string]any{"unit_id": 42}), "unit_id"},
		// id
		{"id missing", event(baseTrack, map[string]any{"id": nil}), "id"},
		{"id empty", event(baseTrack, map[string]any{"id": ""}), "id"},
		{"id not a UUID", event(baseTrack, map[string]any{"id": "evt-1"}), "id"},
		{"id without dashes", event(baseTrack, map[string]any{"id": strings.ReplaceAll(testID, "-", "")}), "id"},
		{"id in braces", event(baseTrack, map[string]any{"id": "{" + testID + "}"}), "id"},
		{"id as URN", event(baseTrack, map[string]any{"id": "urn:uuid:" + testID}), "id"},
		{"id nil UUID", event(baseTrack, map[string]any{"id": uuid.Nil.String()}), "id"},
		{"id a number", event(baseTrack, map[string]any{"id": 7}), "id"},
		// type
		{"type missing", event(baseTrack, map[string]any{"type": nil, "event": nil, "value": nil, "properties": nil}), "type"},
		{"type unknown", event(baseTrack, map[string]any{"type": "click"}), "type"},
		{"type in capitals", event(baseTrack, map[string]any{"type": "TRACK"}), "type"},
		// unit_type and unit_id
		{"unit_type missing", event(baseTrack, map[string]any{"unit_type": nil}), "unit_type"},
		{"unit_type upper case", event(baseTrack, map[string]any{"unit_type": "Customer"}), "unit_type"},
		{"unit_type too long", event(baseTrack, map[string]any{"unit_type": strings.Repeat("a", 33)}), "unit_type"},
		{"unit_id missing", event(baseTrack, map[string]any{"unit_id": nil}), "unit_id"},
		{"unit_id too long", event(baseTrack, map[string]any{"unit_id": strings.Repeat("x", 257)}), "unit_id"},
		{"unit_id NUL", event(baseTrack, map[string]any{"unit_id": "c\x0042"}), "unit_id"},
		// An id is exact: encoding/json would turn every invalid byte into
		// U+FFFD, and "d-\xff" and "d-\xfe" into one unit.
		{"unit_id invalid UTF-8", []byte(strings.Replace(string(event(baseIdentify, nil)), "d-9", "d-\xff", 1)), "unit_id"},
		{"unit_id lone surrogate", []byte(strings.Replace(string(event(baseIdentify, nil)), "d-9", `d-\ud800`, 1)), "unit_id"},
		{"customer_id invalid UTF-8", []byte(strings.Replace(string(event(baseIdentify, nil)), "c-42", "c-\xfe", 1)), "customer_id"},
		// Field names are exact, and each appears once (issue 12).
		{"field name in capitals", []byte(strings.Replace(string(event(baseExposure, nil)), `"unit_id"`, `"Unit_ID"`, 1)), "Unit_ID"},
		{"field name with an escape that spells another", []byte(strings.Replace(string(event(baseTrack, nil)), `"unit_id"`, `"unit_\u0049d"`, 1)), "unit_Id"},
		{"field twice", []byte(strings.Replace(string(event(baseTrack, nil)), `"event"`, `"event":"x","event"`, 1)), "event"},
		{"field twice, once null", []byte(strings.Replace(string(event(baseTrack, nil)), `"value"`, `"value":null,"value"`, 1)), "value"},
		{"attribute twice", event(baseExposure, map[string]any{"attributes": raw(`{"device":"mobile","plan":"pro","device":"desktop"}`)}), "attributes.device"},
		{"attribute twice in a nested object", event(baseExposure, map[string]any{"attributes": raw(`{"a":[{"b":1,"b":2}]}`)}), "attributes.a[0].b"},
		{"attribute twice, once escaped", event(baseExposure, map[string]any{"attributes": raw(`{"plan":1,"pl\u0061n":2}`)}), "attributes.plan"},
		{"property twice among many", event(baseTrack, map[string]any{"properties": raw(manyProperties(40) + `,"p7":0}`)}), "properties.p7"},
		{"attributes nested too deep", event(baseExposure, map[string]any{"attributes": raw(`{"a":` + strings.Repeat("[", 63) + strings.Repeat("]", 63) + `}`)}), "attributes.a" + strings.Repeat("[0]", 62)},
		// timestamp
		{"timestamp more than 24 h ahead", event(baseTrack, map[string]any{"timestamp": testNow.Add(24*time.Hour + time.Second)}), "timestamp"},
		{"timestamp before 2000", event(baseTrack, map[string]any{"timestamp": "1999-12-31T23:59:59Z"}), "timestamp"},
		{"timestamp not RFC 3339", event(baseTrack, map[string]any{"timestamp": "2026-11-23 10:00:00"}), "timestamp"},
		{"timestamp a number", event(baseTrack, map[string]any{"timestamp": 1764000000}), "timestamp"},
		// exposure
		{"exposure without experiment", event(baseExposure, map[string]any{"experiment": nil}), "experiment"},
		{"exposure unknown experiment", event(baseExposure, map[string]any{"experiment": "nope"}), "experiment"},
		{"exposure wrong unit type", event(baseExposure, map[string]any{"unit_type": "device"}), "unit_type"},
		{"exposure unknown variant", event(baseExposure, map[string]any{"variant": "blue"}), "variant"},
		{"exposure without variant", event(baseExposure, map[string]any{"variant": nil}), "variant"},
		{"exposure with event", event(baseExposure, map[string]any{"event": "purchase"}), "event"},
		{"exposure with customer_id", event(baseExposure, map[string]any{"customer_id": "c-1"}), "customer_id"},
		{"exposure with value", event(baseExposure, map[string]any{"value": 1}), "value"},
		{"exposure with properties", event(baseExposure, map[string]any{"properties": map[string]any{"a": 1}}), "properties"},
		// track
		{"track without event", event(baseTrack, map[string]any{"event": nil}), "event"},
		{"track event too long", event(baseTrack, map[string]any{"event": strings.Repeat("e", 129)}), "event"},
		{"track event NUL", event(baseTrack, map[string]any{"event": "a\x00b"}), "event"},
		{"track value NaN as a string", event(baseTrack, map[string]any{"value": "NaN"}), "value"},
		{"track value Infinity", []byte(strings.Replace(string(event(baseTrack, nil)), `59.9`, `Infinity`, 1)), "value"},
		{"track value beyond float64", event(baseTrack, map[string]any{"value": raw("1e400")}), "value"},
		{"track value huge", event(baseTrack, map[string]any{"value": 1e16}), "value"},
		{"track value huge negative", event(baseTrack, map[string]any{"value": -2e15}), "value"},
		{"track with experiment", event(baseTrack, map[string]any{"experiment": "checkout-button"}), "experiment"},
		{"track with variant", event(baseTrack, map[string]any{"variant": "green"}), "variant"},
		{"track with customer_id", event(baseTrack, map[string]any{"customer_id": "c-1"}), "customer_id"},
		// identify
		{"identify without customer_id", event(baseIdentify, map[string]any{"customer_id": nil}), "customer_id"},
		{"identify customer_id too long", event(baseIdentify, map[string]any{"customer_id": strings.Repeat("c", 257)}), "customer_id"},
		{"identify customer_id NUL", event(baseIdentify, map[string]any{"customer_id": "c\x00"}), "customer_id"},
		{"identify self-link", event(baseIdentify, map[string]any{"unit_type": "customer", "unit_id": "c-42"}), "customer_id"},
		{"identify with experiment", event(baseIdentify, map[string]any{"experiment": "checkout-button"}), "experiment"},
		{"identify with variant", event(baseIdentify, map[string]any{"variant": "green"}), "variant"},
		{"identify with event", event(baseIdentify, map[string]any{"event": "purchase"}), "event"},
		// attributes and properties
		{"attributes an array", event(baseExposure, map[string]any{"attributes": []any{1}}), "attributes"},
		{"attributes a string", event(baseExposure, map[string]any{"attributes": "mobile"}), "attributes"},
		{"attributes a number", event(baseExposure, map[string]any{"attributes": 1}), "attributes"},
		{"attributes too large", event(baseExposure, map[string]any{"attributes": map[string]any{"a": strings.Repeat("x", 16<<10)}}), "attributes"},
		{"attributes NUL escape", event(baseExposure, map[string]any{"attributes": raw(`{"a": "x\u0000y"}`)}), "attributes"},
		{"attributes NUL escape in a key", event(baseExposure, map[string]any{"attributes": raw(`{"\u0000": 1}`)}), "attributes"},
		{"attributes number PostgreSQL cannot hold", event(baseExposure, map[string]any{"attributes": raw(`{"a": 1e999999}`)}), "attributes"},
		{"attributes tiny number PostgreSQL cannot hold", event(baseExposure, map[string]any{"attributes": raw(`{"a": [1e-999999]}`)}), "attributes"},
		{"attributes exponent beyond int", event(baseExposure, map[string]any{"attributes": raw(`{"a": 1e99999999999999999999}`)}), "attributes"},
		{"attributes too many decimal places", event(baseExposure, map[string]any{"attributes": raw(`{"a": 0.` + strings.Repeat("1", 15500) + `e-1000}`)}), "attributes"},
		{"properties an array", event(baseTrack, map[string]any{"properties": []any{}}), "properties"},
		{"properties NUL escape", event(baseTrack, map[string]any{"properties": raw(`{"a": "\u0000"}`)}), "properties"},
		{"properties number PostgreSQL cannot hold", event(baseTrack, map[string]any{"properties": raw(`{"a": -5E+1001}`)}), "properties"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := &Validator{}
			_, bad := v.Validate(tt.json, testNow, st)
			if bad == nil {
				t.Fatalf("Validate(%.300s) accepted the event, want a rejection of %q", tt.json, tt.wantField)
			}
			if bad.Code != flywheel.CodeInvalidArgument || bad.Field != tt.wantField || bad.Message == "" {
				t.Errorf("Validate(%.200s) = {%s %q %q}, want invalid_argument on %q", tt.json, bad.Code, bad.Field, bad.Message, tt.wantField)
			}
		})
	}
}

func f64(v float64) *float64 { return &v }

// manyProperties is an object of n properties, p0 to p(n-1), without its
// closing brace.
func manyProperties(n int) string {
	var b strings.Builder
	b.WriteString("{")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"p%d":%d`, i, i)
	}
	return b.String()
}

func TestValidateAccepts(t *testing.T) {
	st := testState(t)
	id := uuid.MustParse(testID)
	tests := []struct {
		name string
		json []byte
		want flywheel.Event
	}{
		{"exposure", event(baseExposure, nil), flywheel.Event{
			ID: id, Type: flywheel.EventExposure, UnitType: "customer", UnitID: "c-42",
			Timestamp: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC), ReceivedAt: testNow,
			Experiment: "checkout-button", Variant: "green", Attributes: json.RawMessage(`{"device":"mobile"}`),
		}},
		{"exposure of a stopped experiment", event(baseExposure, map[string]any{"experiment": "onboarding", "variant": "b", "unit_type": "device", "attributes": nil}), flywheel.Event{
			ID: id, Type: flywheel.EventExposure, UnitType: "device", UnitID: "c-42",
			Timestamp: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC), ReceivedAt: testNow,
			Experiment: "onboarding", Variant: "b",
		}},
		{"track", event(baseTrack, nil), flywheel.Event{
			ID: id, Type: flywheel.EventTrack, UnitType: "customer", UnitID: "c-42",
			Timestamp: time.Date(2026, 11, 23, 10, 5, 0, 0, time.UTC), ReceivedAt: testNow,
			Name: "purchase", Value: f64(59.90), Properties: json.RawMessage(`{"sku":"A-1"}`),
		}},
		{"track without value, null properties, no timestamp", event(baseTrack, map[string]any{"value": nil, "properties": raw("null"), "timestamp": nil}), flywheel.Event{
			ID: id, Type: flywheel.EventTrack, UnitType: "customer", UnitID: "c-42",
			Timestamp: testNow, ReceivedAt: testNow, Name: "purchase",
		}},
		{"track null timestamp and value", event(baseTrack, map[string]any{"value": raw("null"), "timestamp": raw("null"), "properties": nil}), flywheel.Event{
			ID: id, Type: flywheel.EventTrack, UnitType: "customer", UnitID: "c-42",
			Timestamp: testNow, ReceivedAt: testNow, Name: "purchase",
		}},
		{"track value at the limit", event(baseTrack, map[string]any{"value": -1e15, "properties": nil}), flywheel.Event{
			ID: id, Type: flywheel.EventTrack, UnitType: "customer", UnitID: "c-42",
			Timestamp: time.Date(2026, 11, 23, 10, 5, 0, 0, time.UTC), ReceivedAt: testNow,
			Name: "purchase", Value: f64(-1e15),
		}},
		{"timestamp with an offset is stored in UTC", event(baseTrack, map[string]any{"timestamp": "2026-11-23T12:05:00+02:00", "value": nil, "properties": nil}), flywheel.Event{
			ID: id, Type: flywheel.EventTrack, UnitType: "customer", UnitID: "c-42",
			Timestamp: time.Date(2026, 11, 23, 10, 5, 0, 0, time.UTC), ReceivedAt: testNow, Name: "purchase",
		}},
		{"timestamp exactly 24 h ahead", event(baseTrack, map[string]any{"timestamp": testNow.Add(24 * time.Hour), "value": nil, "properties": nil}), flywheel.Event{
			ID: id, Type: flywheel.EventTrack, UnitType: "customer", UnitID: "c-42",
			Timestamp: testNow.Add(24 * time.Hour), ReceivedAt: testNow, Name: "purchase",
		}},
		{"identify", event(baseIdentify, nil), flywheel.Event{
			ID: id, Type: flywheel.EventIdentify, UnitType: "device", UnitID: "d-9",
			Timestamp: time.Date(2026, 11, 23, 10, 6, 0, 0, time.UTC), ReceivedAt: testNow, CustomerID: "c-42",
		}},
		{"identify merging customers", event(baseIdentify, map[string]any{"unit_type": "customer", "unit_id": "c-41"}), flywheel.Event{
			ID: id, Type: flywheel.EventIdentify, UnitType: "customer", UnitID: "c-41",
			Timestamp: time.Date(2026, 11, 23, 10, 6, 0, 0, time.UTC), ReceivedAt: testNow, CustomerID: "c-42",
		}},
		{"upper-case UUID", event(baseIdentify, map[string]any{"id": strings.ToUpper(testID)}), flywheel.Event{
			ID: id, Type: flywheel.EventIdentify, UnitType: "device", UnitID: "d-9",
			Timestamp: time.Date(2026, 11, 23, 10, 6, 0, 0, time.UTC), ReceivedAt: testNow, CustomerID: "c-42",
		}},
		{"unit_id of 256 bytes", event(baseIdentify, map[string]any{"unit_id": strings.Repeat("é", 128)}), flywheel.Event{
			ID: id, Type: flywheel.EventIdentify, UnitType: "device", UnitID: strings.Repeat("é", 128),
			Timestamp: time.Date(2026, 11, 23, 10, 6, 0, 0, time.UTC), ReceivedAt: testNow, CustomerID: "c-42",
		}},
		{"attributes nested to the limit", event(baseExposure, map[string]any{"attributes": raw(`{"a":` + strings.Repeat("[", 62) + strings.Repeat("]", 62) + `}`)}), flywheel.Event{
			ID: id, Type: flywheel.EventExposure, UnitType: "customer", UnitID: "c-42",
			Timestamp: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC), ReceivedAt: testNow,
			Experiment: "checkout-button", Variant: "green", Attributes: json.RawMessage(`{"a":` + strings.Repeat("[", 62) + strings.Repeat("]", 62) + `}`),
		}},
		{"many properties", event(baseTrack, map[string]any{"properties": raw(manyProperties(40) + "}")}), flywheel.Event{
			ID: id, Type: flywheel.EventTrack, UnitType: "customer", UnitID: "c-42",
			Timestamp: time.Date(2026, 11, 23, 10, 5, 0, 0, time.UTC), ReceivedAt: testNow,
			Name: "purchase", Value: f64(59.9), Properties: json.RawMessage(manyProperties(40) + "}"),
		}},
		{"lone surrogate escapes are normalised", event(baseExposure, map[string]any{"attributes": raw(`{"a": "x\ud800y", "b": "\udfff", "c": "\ud83d\ude00"}`)}), flywheel.Event{
			ID: id, Type: flywheel.EventExposure, UnitType: "customer", UnitID: "c-42",
			Timestamp: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC), ReceivedAt: testNow,
			Experiment: "checkout-button", Variant: "green", Attributes: json.RawMessage(`{"a":"x` + "\uFFFD" + `y","b":"` + "\uFFFD" + `","c":"😀"}`),
		}},
		{"escapes keep big numbers exact", event(baseExposure, map[string]any{"attributes": raw(`{"n": 12345678901234567890, "e": 1.5e300, "s": "caf\u00e9"}`)}), flywheel.Event{
			ID: id, Type: flywheel.EventExposure, UnitType: "customer", UnitID: "c-42",
			Timestamp: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC), ReceivedAt: testNow,
			Experiment: "checkout-button", Variant: "green", Attributes: json.RawMessage(`{"e":1.5e300,"n":12345678901234567890,"s":"café"}`),
		}},
		{"invalid UTF-8 in attributes is normalised", []byte(strings.Replace(string(event(baseExposure, nil)), "mobile", "mob\xffile", 1)), flywheel.Event{
			ID: id, Type: flywheel.EventExposure, UnitType: "customer", UnitID: "c-42",
			Timestamp: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC), ReceivedAt: testNow,
			Experiment: "checkout-button", Variant: "green", Attributes: json.RawMessage(`{"device":"mob` + "\uFFFD" + `ile"}`),
		}},
		{"a literal backslash-u0000 is not a NUL", event(baseExposure, map[string]any{"attributes": raw(`{"path": "C:\\u0000"}`)}), flywheel.Event{
			ID: id, Type: flywheel.EventExposure, UnitType: "customer", UnitID: "c-42",
			Timestamp: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC), ReceivedAt: testNow,
			Experiment: "checkout-button", Variant: "green", Attributes: json.RawMessage(`{"path":"C:\\u0000"}`),
		}},
		{"attributes with an exponent PostgreSQL holds", event(baseExposure, map[string]any{"attributes": raw(`{"a": 1e1000, "b": -2.5E-1000, "word": "1e99999"}`)}), flywheel.Event{
			ID: id, Type: flywheel.EventExposure, UnitType: "customer", UnitID: "c-42",
			Timestamp: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC), ReceivedAt: testNow,
			Experiment: "checkout-button", Variant: "green", Attributes: json.RawMessage(`{"a":1e1000,"b":-2.5E-1000,"word":"1e99999"}`),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := &Validator{}
			got, bad := v.Validate(tt.json, testNow, st)
			if bad != nil {
				t.Fatalf("Validate(%s) = %v, want valid", tt.json, bad)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate(%s) mismatch (-want +got):\n%s", tt.json, diff)
			}
		})
	}
}

// TestValidateFirstProblem: an event with several problems is rejected
// once, for the first in the documented order.
func TestValidateFirstProblem(t *testing.T) {
	v := &Validator{}
	_, bad := v.Validate(event(baseTrack, map[string]any{"id": "x", "unit_type": "X", "event": nil}), testNow, testState(t))
	if bad == nil || bad.Field != "id" {
		t.Errorf("Validate(bad id, unit type and event) = %v, want the id reported", bad)
	}
}

func TestPseudonymizer(t *testing.T) {
	if p := NewPseudonymizer(""); p != nil {
		t.Fatalf("NewPseudonymizer(\"\") = %v, want nil", p)
	}
	var none *Pseudonymizer
	if got := none.ID("c-42"); got != "c-42" {
		t.Errorf("nil Pseudonymizer.ID(c-42) = %q, want it unchanged", got)
	}
	p := NewPseudonymizer("secret")
	mac := hmac.New(sha256.New, []byte("secret"))
	mac.Write([]byte("c-42"))
	want := hex.EncodeToString(mac.Sum(nil))
	if got := p.ID("c-42"); got != want {
		t.Errorf("ID(c-42) = %q, want HMAC-SHA256 hex %q", got, want)
	}
	if p.ID("c-42") != p.ID("c-42") {
		t.Error("ID is not deterministic")
	}
	if p.ID("c-42") == p.ID("c-43") {
		t.Error("ID(c-42) == ID(c-43)")
	}
	if NewPseudonymizer("other").ID("c-42") == want {
		t.Error("two keys give the same digest")
	}

	// Validation pseudonymises unit_id and customer_id alike, so a device's
	// link points at the customer's stored id.
	st := testState(t)
	v := &Validator{IDs: p}
	ev, bad := v.Validate(event(baseIdentify, nil), testNow, st)
	if bad != nil {
		t.Fatal(bad)
	}
	if ev.UnitID != p.ID("d-9") || ev.CustomerID != want {
		t.Errorf("identify stored as unit %q customer %q, want %q and %q", ev.UnitID, ev.CustomerID, p.ID("d-9"), want)
	}
	tr, bad := v.Validate(event(baseTrack, nil), testNow, st)
	if bad != nil {
		t.Fatal(bad)
	}
	if tr.UnitID != want {
		t.Errorf("track stored as unit %q, want %q (the same digest as the link)", tr.UnitID, want)
	}
	// A self-link is recognised on the raw ids, before hashing.
	if _, bad := v.Validate(event(baseIdentify, map[string]any{"unit_type": "customer", "unit_id": "c-42"}), testNow, st); bad == nil || bad.Field != "customer_id" {
		t.Errorf("pseudonymised self-link = %v, want rejected on customer_id", bad)
	}
	// Long ids are limited before hashing (the digest is always 64 bytes).
	if _, bad := v.Validate(event(baseTrack, map[string]any{"unit_id": strings.Repeat("x", 257)}), testNow, st); bad == nil || bad.Field != "unit_id" {
		t.Errorf("pseudonymised long unit_id = %v, want rejected", bad)
	}
}
