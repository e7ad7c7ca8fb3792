package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/live"
)

// seedEvents are realistic events, valid and not, for the fuzz corpora.
func seedEvents() [][]byte {
	seeds := [][]byte{
		event(baseExposure, nil),
		event(baseTrack, nil),
		event(baseIdentify, nil),
		event(baseTrack, map[string]any{"timestamp": nil, "value": nil, "properties": nil}),
		event(baseExposure, map[string]any{"variant": "blue"}),
		event(baseExposure, map[string]any{"attributes": raw(`{"a": "x\ud800y", "n": 1e5, "deep": {"list": [1, 2.5, -3e-7, null, true]}}`)}),
		event(baseTrack, map[string]any{"properties": raw(`{"a": "\u0000"}`)}),
		event(baseTrack, map[string]any{"value": raw("1e400")}),
		event(baseIdentify, map[string]any{"unit_type": "customer", "unit_id": "c-42"}),
		event(baseTrack, map[string]any{"id": uuid.Nil.String()}),
		event(baseTrack, map[string]any{"timestamp": "2030-01-01T00:00:00Z"}),
		[]byte(`{"id":"0190c1f2-7d3a-7c4e-9a1b-2f3e4d5c6b7a","type":"track","event":"e","unit_type":"u","unit_id":"\xff"}`),
		[]byte(`{"ID":"0190c1f2-7d3a-7c4e-9a1b-2f3e4d5c6b7a","TYPE":"track","event":"e","unit_type":"u","unit_id":"x","attributes":{"k":1E1001}}`),
		[]byte(`[]`),
		[]byte(`null`),
		[]byte(`{`),
	}
	return seeds
}

// checkRejection: a rejection is invalid_argument with a message.
func checkRejection(tb testing.TB, what string, bad *flywheel.Error) {
	tb.Helper()
	if bad.Code != flywheel.CodeInvalidArgument || bad.Message == "" {
		tb.Fatalf("%s: rejection %+v, want invalid_argument with a message", what, bad)
	}
}

var (
	fuzzUnitType = regexp.MustCompile(`^[a-z_]{1,32}$`)
	fuzzNumber   = regexp.MustCompile(`^-?(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$`)
)

// checkStorable: a valid event is one PostgreSQL will store without error,
// so that it can never poison a group commit.
func checkStorable(tb testing.TB, ev flywheel.Event, now time.Time, st *live.State) {
	tb.Helper()
	fail := func(format string, args ...any) {
		tb.Helper()
		tb.Fatalf("valid event %+v: "+format, append([]any{ev}, args...)...)
	}
	if ev.ID == uuid.Nil {
		fail("zero id")
	}
	if ev.UnitID == "" {
		fail("no unit id")
	}
	if !fuzzUnitType.MatchString(ev.UnitType) {
		fail("unit type %q", ev.UnitType)
	}
	for _, s := range []string{ev.UnitID, ev.Experiment, ev.Variant, ev.Name, ev.CustomerID} {
		if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 || len(s) > 256 {
			fail("text %q is not storable", s)
		}
	}
	if ev.Timestamp.Year() < 2000 || ev.Timestamp.After(now.Add(MaxFuture)) || ev.Timestamp.Location() != time.UTC {
		fail("timestamp %v", ev.Timestamp)
	}
	if !ev.ReceivedAt.Equal(now) {
		fail("received at %v", ev.ReceivedAt)
	}
	switch ev.Type {
	case flywheel.EventExposure:
		exp, ok := st.Experiment(ev.Experiment)
		if !ok || exp.UnitType != ev.UnitType {
			fail("exposure to unknown experiment")
		}
		if ev.Name != "" || ev.Value != nil || ev.CustomerID != "" || ev.Properties != nil {
			fail("exposure with track or identify fields")
		}
	case flywheel.EventTrack:
		if ev.Name == "" || ev.Experiment != "" || ev.Variant != "" || ev.CustomerID != "" {
			fail("track fields")
		}
		if ev.Value != nil && (math.IsNaN(*ev.Value) || math.Abs(*ev.Value) > 1e15) {
			fail("value %v", *ev.Value)
		}
	case flywheel.EventIdentify:
		if ev.CustomerID == "" || ev.Experiment != "" || ev.Variant != "" || ev.Name != "" {
			fail("identify fields")
		}
	default:
		fail("type %q", ev.Type)
	}
	for _, doc := range []json.RawMessage{ev.Attributes, ev.Properties} {
		if doc == nil {
			continue
		}
		if !utf8.Valid(doc) || !json.Valid(doc) || doc[0] != '{' {
			fail("JSON %q is not an object", doc)
		}
		if err := jsonbAccepts(doc); err != nil {
			fail("jsonb would refuse %.200q: %v", doc, err)
		}
	}
}

// jsonbAccepts checks what PostgreSQL's jsonb input refuses beyond JSON
// itself: \u0000, lone surrogate escapes, and numbers outside numeric.
func jsonbAccepts(doc []byte) error {
	for i := 0; i < len(doc); i++ {
		if doc[i] != '\\' {
			continue
		}
		i++
		if i >= len(doc) || doc[i] != 'u' {
			continue // \" \\ \n ...: the escaped byte is skipped
		}
		if i+4 >= len(doc) {
			return errors.New("short \\u escape")
		}
		r, err := strconv.ParseUint(string(doc[i+1:i+5]), 16, 16)
		if err != nil {
			return err
		}
		i += 4
		switch {
		case r == 0:
			return errors.New(`\u0000`)
		case r >= 0xDC00 && r <= 0xDFFF:
			return errors.New("low surrogate without a high one")
		case r >= 0xD800 && r <= 0xDBFF:
			if i+6 >= len(doc) || doc[i+1] != '\\' || doc[i+2] != 'u' {
				return errors.New("high surrogate without a low one")
			}
			lo, err := strconv.ParseUint(string(doc[i+3:i+7]), 16, 16)
			if err != nil || lo < 0xDC00 || lo > 0xDFFF {
				return errors.New("high surrogate without a low one")
			}
			i += 6
		}
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // the end (validity was checked before)
		}
		n, ok := tok.(json.Number)
		if !ok {
			continue
		}
		m := fuzzNumber.FindStringSubmatch(string(n))
		if m == nil {
			return errors.New("number " + string(n))
		}
		exp := 0
		if m[3] != "" {
			if exp, err = strconv.Atoi(m[3]); err != nil || exp > 1000 || exp < -1000 {
				return errors.New("exponent of " + string(n))
			}
		}
		if len(m[2])-exp > 16383 {
			return errors.New("decimal places of " + string(n))
		}
	}
}

// checkOutcomes runs what the API does with decoded events: every raw
// event gets exactly one outcome, a rejection or a storable event.
func checkOutcomes(tb testing.TB, raws []RawEvent, st *live.State) {
	tb.Helper()
	v := &Validator{}
	for i, r := range raws {
		if r.Index != i {
			tb.Fatalf("event %d has index %d", i, r.Index)
		}
		if r.Err != nil {
			checkRejection(tb, "decoding", r.Err)
			continue
		}
		ev, bad := v.Validate(r.JSON, testNow, st)
		if bad != nil {
			checkRejection(tb, "validation", bad)
			continue
		}
		checkStorable(tb, ev, testNow, st)
		checkExactKeys(tb, r.JSON, wireFields())
	}
}

// wireFields is the set of an event's field names.
func wireFields() map[string]bool {
	out := map[string]bool{}
	typ := reflect.TypeFor[wireEvent]()
	for i := range typ.NumField() {
		out[typ.Field(i).Tag.Get("json")] = true
	}
	return out
}

// checkExactKeys: an accepted document names only the fields of names at
// its top level, exactly as spelt there, and has no key twice in any
// object (issue 12: encoding/json matches names case-insensitively and
// keeps the last of two).
func checkExactKeys(tb testing.TB, doc []byte, names map[string]bool) {
	tb.Helper()
	dec := json.NewDecoder(bytes.NewReader(doc))
	type frame struct {
		keys     map[string]bool // nil for an array
		valueNow bool            // in an object: the next token is a value
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return
		}
		if n := len(stack); n > 0 && stack[n-1].keys != nil && !stack[n-1].valueNow {
			top := stack[n-1]
			if tok == json.Delim('}') {
				stack = stack[:n-1]
				continue
			}
			k := tok.(string)
			if top.keys[k] {
				tb.Fatalf("accepted %q holds the key %q twice in one object", doc, k)
			}
			if n == 1 && !names[k] {
				tb.Fatalf("accepted %q names %q, which is not a field", doc, k)
			}
			top.keys[k], top.valueNow = true, true
			continue
		}
		if n := len(stack); n > 0 && stack[n-1].keys != nil {
			stack[n-1].valueNow = false
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{keys: map[string]bool{}})
		case json.Delim('['):
			stack = append(stack, &frame{})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
	}
}

func checkRequestError(tb testing.TB, err error) {
	tb.Helper()
	var fe *flywheel.Error
	if !errors.As(err, &fe) || fe.Message == "" ||
		(fe.Code != flywheel.CodeInvalidArgument && fe.Code != flywheel.CodePayloadTooLarge) {
		tb.Fatalf("request error %#v, want invalid_argument or payload_too_large with a message", err)
	}
}

// envelopeOnly replaces the events of an accepted {"events": [...]} body
// by [], so that checkExactKeys looks at the envelope alone (events are
// checked one by one, and a rejected one may repeat keys).
func envelopeOnly(body []byte) []byte {
	dec := json.NewDecoder(bytes.NewReader(body))
	out := []byte("{")
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return body
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return body
		}
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return body
		}
		key, _ := json.Marshal(k)
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(append(out, key...), ":[]"...)
	}
	return append(out, '}')
}

func FuzzDecodeJSON(f *testing.F) {
	seeds := seedEvents()
	f.Add([]byte(`{"events": [` + string(bytes.Join(seeds, []byte(","))) + `]}`))
	for _, s := range seeds {
		f.Add([]byte(`{"events": [` + string(s) + `]}`))
	}
	f.Add([]byte(`{"events": []}}`))
	f.Add([]byte(`{"events": null, "x": 1}`))
	f.Add([]byte(`[]`))
	st := testState(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		raws, err := DecodeJSON(body)
		if err != nil {
			if raws != nil {
				t.Fatalf("DecodeJSON returned %d events with error %v", len(raws), err)
			}
			checkRequestError(t, err)
			return
		}
		if len(raws) > MaxEvents {
			t.Fatalf("DecodeJSON gave %d events, more than %d", len(raws), MaxEvents)
		}
		checkExactKeys(t, envelopeOnly(body), map[string]bool{"events": true})
		checkOutcomes(t, raws, st)
	})
}

func FuzzDecodeNDJSON(f *testing.F) {
	seeds := seedEvents()
	f.Add(bytes.Join(seeds, []byte("\n")))
	f.Add(bytes.Join(seeds, []byte("\r\n\r\n")))
	for _, s := range seeds {
		f.Add(append(append([]byte{}, s...), '\n'))
	}
	f.Add([]byte("\n\n{\n}\n"))
	st := testState(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		raws, err := DecodeNDJSON(body)
		if err != nil {
			checkRequestError(t, err)
			return
		}
		if lines := bytes.Count(body, []byte("\n")) + 1; len(raws) > lines {
			t.Fatalf("DecodeNDJSON gave %d events from %d lines", len(raws), lines)
		}
		for _, r := range raws {
			if len(r.JSON) == 0 || bytes.IndexByte(r.JSON, '\n') >= 0 {
				t.Fatalf("event %d is %q: not one non-blank line", r.Index, r.JSON)
			}
			if (r.Err == nil) != json.Valid(r.JSON) {
				t.Fatalf("event %d %q: decoding error %v, but json.Valid = %v", r.Index, r.JSON, r.Err, json.Valid(r.JSON))
			}
		}
		checkOutcomes(t, raws, st)
	})
}

func FuzzValidate(f *testing.F) {
	for _, s := range seedEvents() {
		f.Add(s, false)
		f.Add(s, true)
	}
	st := testState(f)
	f.Fuzz(func(t *testing.T, raw []byte, pseudonymise bool) {
		v := &Validator{}
		if pseudonymise {
			v.IDs = NewPseudonymizer("fuzz-key")
		}
		ev, bad := v.Validate(raw, testNow, st)
		if bad != nil {
			checkRejection(t, "Validate", bad)
			return
		}
		checkStorable(t, ev, testNow, st)
		checkExactKeys(t, raw, wireFields())
		if pseudonymise && len(ev.UnitID) != 64 {
			t.Fatalf("pseudonymised unit id %q is not a SHA-256 hex digest", ev.UnitID)
		}
		// Validation is deterministic.
		again, bad := v.Validate(raw, testNow, st)
		if bad != nil || !bytes.Equal(again.Attributes, ev.Attributes) || again.UnitID != ev.UnitID || again.ID != ev.ID {
			t.Fatalf("Validate is not deterministic: %+v then %+v, %v", ev, again, bad)
		}
	})
}
