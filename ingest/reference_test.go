package ingest

// The ingest path as it was before the fast decoder (decodeEvent, splitJSON),
// kept as the oracle of the tests that check the fast path changes nothing:
// every body decodes and validates to the same events and the same errors,
// message for message. Since field names became exact and keys unique
// (issue 12), the reference also runs the slow path's checks before
// encoding/json (envelopeKeys, strictjson.Check), and names the field of a
// line or body that is not JSON as it does (lineError, strictjson.PathAt):
// the fast path must agree with them, and they have tests of their own.

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/internal/strictjson"
	"github.com/flywheel-oss/flywheel/live"
)

var refUnitTypePattern = regexp.MustCompile(`^[a-z_]{1,32}$`)

// refDecodeJSON splits a {"events": [...]} body into raw events. A body that is
// not such an object is an error for the whole request.
func refDecodeJSON(body []byte) ([]RawEvent, error) {
	var env struct {
		Events []json.RawMessage `json:"events"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		return nil, refEnvelopeError(err, body)
	}
	if _, err := dec.Token(); err != io.EOF { // More() misses a stray } or ]
		return nil, flywheel.Invalid("", "request body must hold exactly one JSON object")
	}
	if err := envelopeKeys(body); err != nil {
		return nil, err
	}
	if env.Events == nil {
		return nil, flywheel.Invalid("events", `body must be {"events": [...]}`)
	}
	if len(env.Events) > MaxEvents {
		return nil, flywheel.Errorf(flywheel.CodePayloadTooLarge, "at most %d events a request, got %d", MaxEvents, len(env.Events))
	}
	out := make([]RawEvent, len(env.Events))
	for i, e := range env.Events {
		out[i] = RawEvent{Index: i, JSON: e}
	}
	return out, nil
}

// refDecodeNDJSON splits a newline-delimited body into raw events, one a line.
// Blank lines are skipped and do not count; a line that is not valid JSON
// is rejected on its own, with its index.
func refDecodeNDJSON(body []byte) ([]RawEvent, error) {
	var out []RawEvent
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 64<<10), MaxBodyBytes)
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if len(out) == MaxEvents {
			return nil, flywheel.Errorf(flywheel.CodePayloadTooLarge, "at most %d events a request", MaxEvents)
		}
		ev := RawEvent{Index: len(out), JSON: append([]byte(nil), line...)}
		if !json.Valid(line) {
			ev.Err = lineError(line, lineNo)
		}
		out = append(out, ev)
	}
	if err := sc.Err(); err != nil {
		return nil, flywheel.Invalid("", "reading NDJSON: %v", err)
	}
	return out, nil
}

func refEnvelopeError(err error, body []byte) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return flywheel.Invalid("", `request body is empty; send {"events": [...]}`)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return flywheel.Invalid(strictjson.PathAt(body), "malformed JSON: unexpected end of input")
	case errors.As(err, &syn):
		return flywheel.Invalid(strictjson.PathAt(body), "malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return flywheel.Invalid("", `body must be {"events": [...]}`)
		}
		return flywheel.Invalid(typ.Field, "events must be an array of event objects")
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return flywheel.Invalid(strings.Trim(name, `"`), `unknown field %s: body must be {"events": [...]}`, name)
	}
	return flywheel.Invalid("", "invalid JSON: %v", err)
}

// refFieldError names the field of a per-event decoding error.
func refFieldError(err error) *flywheel.Error {
	var typ *json.UnmarshalTypeError
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &typ):
		if typ.Field == "" {
			return flywheel.Invalid("", "an event must be a JSON object, not %s", typ.Value)
		}
		return flywheel.Invalid(typ.Field, "%s has the wrong type (%s)", typ.Field, typ.Value)
	case errors.As(err, &syn):
		return flywheel.Invalid("", "malformed JSON: %v", syn)
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		return flywheel.Invalid(name, "unknown field %q", name)
	}
	return flywheel.Invalid("", "%v", fmt.Sprint(err))
}

// refID returns the stored form of a unit id.
func refID(p *Pseudonymizer, id string) string {
	if p == nil {
		return id
	}
	m := hmac.New(sha256.New, p.key)
	m.Write([]byte(id))
	return hex.EncodeToString(m.Sum(nil))
}

// refValidate decodes and checks one event received at now. st is the live
// configuration (the experiments exposures may name).
func refValidate(v *Validator, raw []byte, now time.Time, st *live.State) (flywheel.Event, *flywheel.Error) {
	var w wireEvent
	if bad := strictjson.Check(raw, reflect.TypeFor[wireEvent](), strictjson.Options{Subject: "event", LenientText: true}); bad != nil {
		return flywheel.Event{}, bad
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return flywheel.Event{}, refFieldError(err)
	}
	e := flywheel.Event{Type: flywheel.EventType(w.Type), UnitType: w.UnitType, ReceivedAt: now}
	id, err := uuid.Parse(w.ID)
	switch {
	case w.ID == "":
		return e, flywheel.Invalid("id", "id is required: a UUID (time-ordered v7 recommended) that makes a retry safe")
	case err != nil || len(w.ID) != 36:
		return e, flywheel.Invalid("id", "id must be a UUID in its 36-character form, e.g. 0190c1f2-7d3a-7c4e-9a1b-2f3e4d5c6b7a")
	case id == uuid.Nil:
		// Every sender with a bug would share it, and dedupe each other away.
		return e, flywheel.Invalid("id", "id must not be the nil UUID")
	}
	e.ID = id
	if !refUnitTypePattern.MatchString(w.UnitType) {
		return e, flywheel.Invalid("unit_type", "unit_type must match ^[a-z_]{1,32}$")
	}
	if bad := refCheckText("unit_id", w.UnitID, maxIDLen, true); bad != nil {
		return e, bad
	}
	e.UnitID = refID(v.IDs, w.UnitID)
	var ts *time.Time
	if len(w.Timestamp) > 0 {
		if err := json.Unmarshal(w.Timestamp, &ts); err != nil {
			return e, flywheel.Invalid("timestamp", "timestamp must be an RFC 3339 string such as 2026-11-23T10:00:00Z")
		}
	}
	switch {
	case ts == nil:
		e.Timestamp = now
	case ts.After(now.Add(MaxFuture)):
		return e, flywheel.Invalid("timestamp", "timestamp is more than 24 h in the future (server time %s)", now.Format(time.RFC3339))
	case ts.Year() < 2000:
		return e, flywheel.Invalid("timestamp", "timestamp is before the year 2000")
	default:
		e.Timestamp = ts.UTC()
	}
	var bad *flywheel.Error
	if e.Attributes, bad = refCheckObject("attributes", w.Attributes); bad != nil {
		return e, bad
	}
	if e.Properties, bad = refCheckObject("properties", w.Properties); bad != nil {
		return e, bad
	}

	// Fields that belong to another type are mistakes worth telling apart.
	misplaced := func(field, val string, belongs string) *flywheel.Error {
		if val != "" {
			return flywheel.Invalid(field, "%s belongs to %s events, not %s", field, belongs, w.Type)
		}
		return nil
	}
	switch e.Type {
	case flywheel.EventExposure:
		for _, m := range []*flywheel.Error{misplaced("event", w.Event, "track"), misplaced("customer_id", w.CustomerID, "identify")} {
			if m != nil {
				return e, m
			}
		}
		if w.Value != nil {
			return e, flywheel.Invalid("value", "value belongs to track events, not exposure")
		}
		if e.Properties != nil {
			return e, flywheel.Invalid("properties", "properties belong to track events, not exposure")
		}
		return e, refExposure(v, &e, w, st)
	case flywheel.EventTrack:
		for _, m := range []*flywheel.Error{misplaced("experiment", w.Experiment, "exposure"), misplaced("variant", w.Variant, "exposure"), misplaced("customer_id", w.CustomerID, "identify")} {
			if m != nil {
				return e, m
			}
		}
		if bad := refCheckText("event", w.Event, maxNameLen, true); bad != nil {
			return e, bad
		}
		if w.Value != nil && (math.IsNaN(*w.Value) || math.IsInf(*w.Value, 0) || math.Abs(*w.Value) > 1e15) {
			return e, flywheel.Invalid("value", "value must be a finite number of magnitude at most 1e15")
		}
		e.Name, e.Value = w.Event, w.Value
		return e, nil
	case flywheel.EventIdentify:
		for _, m := range []*flywheel.Error{misplaced("experiment", w.Experiment, "exposure"), misplaced("variant", w.Variant, "exposure"), misplaced("event", w.Event, "track")} {
			if m != nil {
				return e, m
			}
		}
		if w.Value != nil {
			return e, flywheel.Invalid("value", "value belongs to track events, not identify")
		}
		if bad := refCheckText("customer_id", w.CustomerID, maxIDLen, true); bad != nil {
			return e, bad
		}
		if w.UnitType == "customer" && w.CustomerID == w.UnitID {
			return e, flywheel.Invalid("customer_id", "a customer cannot be linked to itself")
		}
		e.CustomerID = refID(v.IDs, w.CustomerID)
		return e, nil
	case "":
		return e, flywheel.Invalid("type", "type is required: exposure, track or identify")
	}
	return e, flywheel.Invalid("type", "type must be exposure, track or identify, not %q", w.Type)
}

func refExposure(v *Validator, e *flywheel.Event, w wireEvent, st *live.State) *flywheel.Error {
	if w.Experiment == "" {
		return flywheel.Invalid("experiment", "an exposure names its experiment")
	}
	exp, ok := st.Experiment(w.Experiment)
	if !ok {
		return flywheel.Invalid("experiment", "unknown experiment %q", w.Experiment)
	}
	if exp.UnitType != w.UnitType {
		return flywheel.Invalid("unit_type", "experiment %q randomises on %s ids, not %s", w.Experiment, exp.UnitType, w.UnitType)
	}
	found := false
	for _, vr := range exp.Variants {
		found = found || vr.Key == w.Variant
	}
	if !found {
		return flywheel.Invalid("variant", "%q is not a variant of experiment %q", w.Variant, w.Experiment)
	}
	e.Experiment, e.Variant = w.Experiment, w.Variant
	return nil
}

// refCheckText enforces length and the one character PostgreSQL text cannot
// hold (NUL).
func refCheckText(field, s string, max int, required bool) *flywheel.Error {
	switch {
	case s == "" && required:
		return flywheel.Invalid(field, "%s is required", field)
	case len(s) > max:
		return flywheel.Invalid(field, "%s must be at most %d bytes", field, max)
	case strings.IndexByte(s, 0) >= 0:
		return flywheel.Invalid(field, "%s must not contain NUL characters", field)
	}
	return nil
}

// refCheckObject accepts an absent value, null, or a JSON object within the
// size limit, and returns it in a form jsonb accepts: escapes that
// PostgreSQL refuses (lone surrogates) and invalid UTF-8 are normalised by a
// round trip through encoding/json, and NUL characters are refused.
func refCheckObject(field string, raw json.RawMessage) (json.RawMessage, *flywheel.Error) {
	t := bytes.TrimSpace(raw)
	switch {
	case len(t) == 0 || string(t) == "null":
		return nil, nil
	case t[0] != '{':
		return nil, flywheel.Invalid(field, "%s must be a JSON object", field)
	case len(t) > maxJSONBytes:
		return nil, flywheel.Invalid(field, "%s must be at most %d bytes of JSON", field, maxJSONBytes)
	}
	// Without escapes the text cannot hold NUL (JSON has no raw control
	// characters) nor a lone surrogate, and only an exponent can make a
	// number too large for PostgreSQL; anything else is checked decoded.
	normalise := !utf8.Valid(t) || bytes.Contains(t, []byte(`\u`))
	if normalise || refHasExponent(t) {
		dec := json.NewDecoder(bytes.NewReader(t))
		dec.UseNumber() // numbers keep their digits through the round trip
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, flywheel.Invalid(field, "%s is not valid JSON", field)
		}
		if problem := refUnstorable(v); problem != "" {
			return nil, flywheel.Invalid(field, "%s %s", field, problem)
		}
		if normalise {
			t, _ = json.Marshal(v) // decoded JSON always re-encodes
		}
	}
	return t, nil
}

// refHasExponent reports whether t may hold a number with an exponent (a digit
// followed by e or E, possibly inside a string): only those can exceed what
// PostgreSQL's numeric (and so jsonb) holds, since the size limit keeps
// plain digits well within it.
func refHasExponent(t []byte) bool {
	for i := 1; i < len(t); i++ {
		if (t[i] == 'e' || t[i] == 'E') && t[i-1] >= '0' && t[i-1] <= '9' {
			return true
		}
	}
	return false
}

// refUnstorable names what in v (decoded with UseNumber) jsonb refuses, or
// returns "": a NUL character (in a key or a string), or a number that
// PostgreSQL's numeric cannot hold, with an exponent beyond ±1000 (13 and
// older refuse it) or more than 16383 digits after the decimal point once
// the exponent is applied. Such a value would fail the whole group commit.
func refUnstorable(v any) string {
	switch x := v.(type) {
	case string:
		if strings.IndexByte(x, 0) >= 0 {
			return "must not contain NUL characters"
		}
	case json.Number:
		mant, exp, found := strings.Cut(strings.ToLower(string(x)), "e")
		if !found {
			return ""
		}
		e, err := strconv.Atoi(exp)
		_, frac, _ := strings.Cut(mant, ".")
		if err != nil || e > 1000 || e < -1000 || len(frac)-e > 16383 {
			return "holds a number PostgreSQL cannot store (exponent beyond ±1000, or more than 16383 decimal places)"
		}
	case map[string]any:
		for k, y := range x {
			if p := refUnstorable(k); p != "" {
				return p
			}
			if p := refUnstorable(y); p != "" {
				return p
			}
		}
	case []any:
		for _, y := range x {
			if p := refUnstorable(y); p != "" {
				return p
			}
		}
	}
	return ""
}

// checkSameAsReference decodes body as a JSON request and as an NDJSON
// request, and validates every event, and body as one event, both through
// the fast path and through the reference; the results must be the same.
func checkSameAsReference(tb testing.TB, body []byte, v *Validator, st *live.State) {
	tb.Helper()
	decoders := []struct {
		name      string
		got, want func([]byte) ([]RawEvent, error)
	}{
		{"DecodeJSON", DecodeJSON, refDecodeJSON},
		{"DecodeNDJSON", DecodeNDJSON, refDecodeNDJSON},
	}
	for _, d := range decoders {
		got, gotErr := d.got(body)
		want, wantErr := d.want(body)
		if diff := cmp.Diff(wantErr, gotErr); diff != "" {
			tb.Fatalf("%s(%.300q) error mismatch (-reference +fast):\n%s", d.name, body, diff)
		}
		if (got == nil) != (want == nil) || len(got) != len(want) {
			tb.Fatalf("%s(%.300q) = %d events (nil %v), reference %d (nil %v)", d.name, body, len(got), got == nil, len(want), want == nil)
		}
		for i, g := range got {
			w := want[i]
			if g.Index != w.Index || !bytes.Equal(g.JSON, w.JSON) || (g.JSON == nil) != (w.JSON == nil) || !cmp.Equal(g.Err, w.Err) {
				tb.Fatalf("%s(%.300q) event %d = {%d %q %v}, reference {%d %q %v}", d.name, body, i, g.Index, g.JSON, g.Err, w.Index, w.JSON, w.Err)
			}
			// What handleEvents did: a broken event is rejected with its
			// error, the others validated one by one.
			gotEv, gotBad := v.ValidateRaw(g, testNow, st)
			wantEv, wantBad := flywheel.Event{}, w.Err
			if w.Err == nil {
				wantEv, wantBad = refValidate(v, w.JSON, testNow, st)
			}
			if diff := cmp.Diff(wantEv, gotEv); diff != "" {
				tb.Fatalf("%s(%.300q) event %d: ValidateRaw mismatch (-reference +fast):\n%s", d.name, body, i, diff)
			}
			if diff := cmp.Diff(wantBad, gotBad); diff != "" {
				tb.Fatalf("%s(%.300q) event %d: ValidateRaw error mismatch (-reference +fast):\n%s", d.name, body, i, diff)
			}
		}
	}
	gotEv, gotBad := v.Validate(body, testNow, st)
	wantEv, wantBad := refValidate(v, body, testNow, st)
	if diff := cmp.Diff(wantEv, gotEv); diff != "" {
		tb.Fatalf("Validate(%.300q) mismatch (-reference +fast):\n%s", body, diff)
	}
	if diff := cmp.Diff(wantBad, gotBad); diff != "" {
		tb.Fatalf("Validate(%.300q) error mismatch (-reference +fast):\n%s", body, diff)
	}
}

// trickyEvents are events at the edges of what the fast decoder takes:
// each must come out exactly as encoding/json decodes it.
func trickyEvents() [][]byte {
	track := string(event(baseTrack, nil))
	deep := strings.Repeat(`{"a":`, maxFastDepth+2) + "1" + strings.Repeat("}", maxFastDepth+2)
	deeper := `{"a":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + "}" // beyond encoding/json's limit
	evs := []string{
		`{}`, `{ }`, ` {} `, `{"id":null}`, `[]`, `null`, `1`, `"x"`, `{`, `}`, `{"id"}`, `{"id":}`, `{,}`, `{"id":"x",}`,
		`{"id":"x"}{}`, `{"id":"x"} x`, "\t{\"id\":\"x\"}\r\n",
		strings.Replace(track, `"id"`, `"ID"`, 1),
		strings.Replace(track, `"id"`, `"Id"`, 1),
		strings.Replace(track, `"unit_id"`, `"unit_\u0069d"`, 1),
		strings.Replace(track, `"properties"`, `"propertieſ"`, 1),
		strings.Replace(track, `"event"`, `"event":"first","event"`, 1),
		strings.Replace(track, `"value"`, `"value":null,"value"`, 1),
		strings.Replace(track, `"value"`, `"value":1,"value":null,"x"`, 1),
		strings.Replace(track, `"value":59.9`, `"value":1,"value":null`, 1),
		strings.Replace(track, `"event":"purchase"`, `"event":"x","event":null`, 1),
		strings.Replace(track, `"properties":{"sku":"A-1"}`, `"properties":{"sku":"A-1"},"properties":null`, 1),
		strings.Replace(track, `"timestamp"`, `"timestamp":"2026-11-23T11:00:00Z","timestamp"`, 1),
		strings.Replace(track, `"c-42"`, `"c-\u0034\u0032"`, 1),
		strings.Replace(track, `"c-42"`, `"c-42\"x"`, 1),
		strings.Replace(track, `"c-42"`, `"c-\u00e9"`, 1),
		strings.Replace(track, `"c-42"`, `"c-\ud800"`, 1),
		strings.Replace(track, `"c-42"`, "\"c-\xed\xa0\x80\"", 1),
		strings.Replace(track, `"c-42"`, "\"c-\xef\xbf\xbd\"", 1),
		strings.Replace(track, `"c-42"`, "\"c-é€😀\"", 1),
		strings.Replace(track, `"c-42"`, "\"c-\x7f\"", 1),
		strings.Replace(track, `"c-42"`, "\"c-\x1f\"", 1),
		strings.Replace(track, `"c-42"`, "\"c-\t\"", 1),
		strings.Replace(track, `"c-42"`, `null`, 1),
		strings.Replace(track, `"c-42"`, `42`, 1),
		strings.Replace(track, `"c-42"`, `true`, 1),
		strings.Replace(track, `"c-42"`, `{}`, 1),
		strings.Replace(track, `"c-42"`, `nul`, 1),
		strings.Replace(track, `"c-42"`, `nullx`, 1),
		strings.Replace(track, `"purchase"`, `""`, 1),
		strings.Replace(track, `:`, ` : `, -1),
		strings.Replace(track, `,`, " ,\n\t", -1),
		strings.Replace(track, `2026-11-23T10:05:00Z`, `2026-11-23T10:05:00.123456789+01:00`, 1),
		strings.Replace(track, `"2026-11-23T10:05:00Z"`, `"2026-11-23T10:05:00\u005a"`, 1),
		strings.Replace(track, `"2026-11-23T10:05:00Z"`, `"2026-11-23 10:05:00Z"`, 1),
		strings.Replace(track, `"2026-11-23T10:05:00Z"`, `"2026-11-23T24:00:00Z"`, 1),
		strings.Replace(track, `"2026-11-23T10:05:00Z"`, `"2026-11-23t10:05:00z"`, 1),
		strings.Replace(track, `"2026-11-23T10:05:00Z"`, `null`, 1),
		strings.Replace(track, `"2026-11-23T10:05:00Z"`, `1764000000`, 1),
		strings.Replace(track, `"2026-11-23T10:05:00Z"`, `{"t":"2026-11-23T10:05:00Z"}`, 1),
		strings.Replace(track, `"2026-11-23T10:05:00Z"`, `["2026-11-23T10:05:00Z"]`, 1),
		strings.Replace(track, `"2026-11-23T10:05:00Z"`, `"2026-11-23T10:05:00Z" `, 1),
		strings.Replace(track, `59.9`, `-0`, 1),
		strings.Replace(track, `59.9`, `0.000001`, 1),
		strings.Replace(track, `59.9`, `1E3`, 1),
		strings.Replace(track, `59.9`, `1e+15`, 1),
		strings.Replace(track, `59.9`, `1e400`, 1),
		strings.Replace(track, `59.9`, `-1e-400`, 1),
		strings.Replace(track, `59.9`, `01`, 1),
		strings.Replace(track, `59.9`, `1.`, 1),
		strings.Replace(track, `59.9`, `.5`, 1),
		strings.Replace(track, `59.9`, `-`, 1),
		strings.Replace(track, `59.9`, `+1`, 1),
		strings.Replace(track, `59.9`, `1e`, 1),
		strings.Replace(track, `59.9`, `0x10`, 1),
		strings.Replace(track, `59.9`, `"59.9"`, 1),
		strings.Replace(track, `59.9`, `NaN`, 1),
		strings.Replace(track, `59.9`, `[1]`, 1),
		strings.Replace(track, `{"sku":"A-1"}`, `{"sku":"A-1","n":[1,2.5,-3e-7,null,true,false,{},[]],"s":"\"\\\/\b\f\n\r\t\u00e9"}`, 1),
		strings.Replace(track, `{"sku":"A-1"}`, `{"sku":"\x"}`, 1),
		strings.Replace(track, `{"sku":"A-1"}`, `{"sku":"\u12"}`, 1),
		strings.Replace(track, `{"sku":"A-1"}`, `{"sku":"\u12g4"}`, 1),
		strings.Replace(track, `{"sku":"A-1"}`, `{"sku" "A-1"}`, 1),
		strings.Replace(track, `{"sku":"A-1"}`, `{"sku":"A-1",}`, 1),
		strings.Replace(track, `{"sku":"A-1"}`, `{"sku":[1,]}`, 1),
		strings.Replace(track, `{"sku":"A-1"}`, `{"sku":[1 2]}`, 1),
		strings.Replace(track, `{"sku":"A-1"}`, `{"sku":tru}`, 1),
		strings.Replace(track, `{"sku":"A-1"}`, `{1:2}`, 1),
		strings.Replace(track, `{"sku":"A-1"}`, `{"a":1e99999}`, 1),
		strings.Replace(track, `{"sku":"A-1"}`, "{\"a\":\"\xff\"}", 1),
		strings.Replace(track, `{"sku":"A-1"}`, `{"a":"\u0000"}`, 1),
		strings.Replace(track, `{"sku":"A-1"}`, deep, 1),
		strings.Replace(track, `{"sku":"A-1"}`, deeper, 1),
		strings.Replace(track, `{"sku":"A-1"}`, `{ "sku" : "A-1" }`, 1),
		// Keys the fast path must compare, or leave to the slow path.
		strings.Replace(track, `{"sku":"A-1"}`, `{"sku":"A-1","sku":"A-2"}`, 1),
		strings.Replace(track, `{"sku":"A-1"}`, `{"sku":"A-1","n":{"a":1,"b":[{"c":1,"c":2}]}}`, 1),
		strings.Replace(track, `{"sku":"A-1"}`, `{"sku":"A-1","sk\u0075":"A-2"}`, 1),
		strings.Replace(track, `{"sku":"A-1"}`, "{\"\xff\":1,\"\xfe\":2}", 1),
		strings.Replace(track, `{"sku":"A-1"}`, "{\"\xff\":1,\"a\":2}", 1),
		strings.Replace(track, `{"sku":"A-1"}`, `{"a":{"x":1},"b":{"x":1},"a ":1}`, 1),
		strings.Replace(track, `{"sku":"A-1"}`, manyProperties(maxFastKeys)+"}", 1),
		strings.Replace(track, `{"sku":"A-1"}`, manyProperties(maxFastKeys+1)+"}", 1),
		strings.Replace(track, `{"sku":"A-1"}`, manyProperties(maxFastKeys+1)+`,"p0":1}`, 1),
		strings.Replace(track, `"event"`, `"Event"`, 1),
		strings.Replace(track, `"event"`, `"EVENT":"x","event"`, 1),
		strings.Replace(track, `{"sku":"A-1"}`, `null`, 1),
		strings.Replace(track, `{"sku":"A-1"}`, `[]`, 1),
		strings.Replace(track, `{"sku":"A-1"}`, `"{}"`, 1),
		strings.Replace(track, `}`, `,"revenue":1}`, 1),
		track[:len(track)-1],
		track[:len(track)/2],
	}
	out := make([][]byte, len(evs))
	for i, e := range evs {
		out[i] = []byte(e)
	}
	return out
}

// referenceCorpus is every event of the tests, alone, in requests and in
// envelopes of every shape.
func referenceCorpus() [][]byte {
	evs := append(seedEvents(), trickyEvents()...)
	jsonBody, ndjson := benchBodies(40)
	all := bytes.Join(evs, []byte(","))
	bodies := [][]byte{jsonBody, ndjson, bytes.Join(evs, []byte("\n")), bytes.Join(evs, []byte("\r\n\n")),
		[]byte(`{"events":[` + string(all) + `]}`),
		[]byte(" \n{ \"events\" :\n[ " + string(bytes.Join(evs, []byte(" ,\n"))) + " ]\t}\r\n"),
		[]byte(``), []byte(` `), []byte(`{}`), []byte(`{"events":null}`), []byte(`{"events":[]}`), []byte(`{"events":[ ]}`),
		[]byte(`{"events":[]} `), []byte(`{"events":[]}x`), []byte(`{"events":[]}}`), []byte(`{"events":[],}`),
		[]byte(`{"events":[1,]}`), []byte(`{"events":[1 2]}`), []byte(`{"events":[{}`), []byte(`{"events":[{}]`),
		[]byte(`{"Events":[{}]}`), []byte(`{"events":[{}],"events":[{},{}]}`), []byte(`{"events":[],"x":1}`),
		[]byte(`{"ev\u0065nts":[{}]}`), []byte(`{"events":{}}`), []byte(`{"events":5}`), []byte(`[{"events":[]}]`),
		[]byte(`{"events":[1, "x", null, [], {}, true, -0.5e3]}`),
		[]byte(`{"events":[` + strings.Repeat(`{},`, MaxEvents-1) + `{}]}`),
		[]byte(`{"events":[` + strings.Repeat(`{},`, MaxEvents) + `{}]}`),
		[]byte(`{"events":[` + strings.Repeat(`{},`, MaxEvents) + `{]}`),
		[]byte(strings.Repeat("{}\n", MaxEvents)), []byte(strings.Repeat("{}\n", MaxEvents+1)),
	}
	for _, e := range evs {
		bodies = append(bodies, e,
			[]byte(`{"events":[`+string(e)+`]}`),
			[]byte(`{"events":[{},`+string(e)+`,{}]}`),
			[]byte(`{"events": [ `+string(e)+` ] }`))
	}
	return bodies
}

func TestMatchesReference(t *testing.T) {
	st := testState(t)
	for _, v := range []*Validator{{}, {IDs: NewPseudonymizer("a-key")}} {
		for _, body := range referenceCorpus() {
			checkSameAsReference(t, body, v, st)
		}
	}
}

// TestFastPathTaken: the events senders send are decoded while splitting,
// so that validation does not decode them again.
func TestFastPathTaken(t *testing.T) {
	jsonBody, ndjson := benchBodies(benchEvents)
	for _, d := range []struct {
		name   string
		decode func([]byte) ([]RawEvent, error)
		body   []byte
	}{{"DecodeJSON", DecodeJSON, jsonBody}, {"DecodeNDJSON", DecodeNDJSON, ndjson}} {
		raws, err := d.decode(d.body)
		if err != nil || len(raws) != benchEvents {
			t.Fatalf("%s = %d events, %v", d.name, len(raws), err)
		}
		for _, r := range raws {
			if r.wire == nil {
				t.Fatalf("%s: event %d (%s) was not decoded while splitting", d.name, r.Index, r.JSON)
			}
		}
	}
}

// TestFastPathKnowsEveryField: a field added to wireEvent must be added to
// decodeEvent too, or every event that carries it is decoded twice.
func TestFastPathKnowsEveryField(t *testing.T) {
	typ := reflect.TypeFor[wireEvent]()
	for i := range typ.NumField() {
		raw := []byte(`{"` + typ.Field(i).Tag.Get("json") + `": null}`)
		if end := decodeEvent(raw, 0, new(wireEvent)); end != len(raw) {
			t.Errorf("decodeEvent(%s) = %d, want %d: the fast path does not know the field", raw, end, len(raw))
		}
	}
}

func FuzzMatchesReference(f *testing.F) {
	for _, body := range referenceCorpus() {
		if len(body) < 4096 {
			f.Add(body, false)
		}
	}
	st := testState(f)
	pseudonymised := &Validator{IDs: NewPseudonymizer("fuzz-key")}
	f.Fuzz(func(t *testing.T, body []byte, pseudonymise bool) {
		v := &Validator{}
		if pseudonymise {
			v = pseudonymised
		}
		checkSameAsReference(t, body, v, st)
	})
}

// TestNoSharedMemory: like encoding/json's, the raw events and the events
// do not share memory with the body, which the caller may reuse.
func TestNoSharedMemory(t *testing.T) {
	st := testState(t)
	v := &Validator{}
	jsonBody, ndjson := benchBodies(20)
	for _, d := range []struct {
		name   string
		decode func([]byte) ([]RawEvent, error)
		body   []byte
	}{{"DecodeJSON", DecodeJSON, jsonBody}, {"DecodeNDJSON", DecodeNDJSON, ndjson}} {
		raws, err := d.decode(d.body)
		if err != nil {
			t.Fatal(err)
		}
		var want []flywheel.Event
		for _, r := range raws {
			ev, bad := v.ValidateRaw(r, testNow, st)
			if bad != nil {
				t.Fatalf("%s: event %d: %v", d.name, r.Index, bad)
			}
			want = append(want, ev)
		}
		first := bytes.Clone(raws[0].JSON)
		clear(d.body)
		if !bytes.Equal(raws[0].JSON, first) {
			t.Errorf("%s: clearing the body changed the first raw event to %q", d.name, raws[0].JSON)
		}
		for i, r := range raws {
			got, bad := v.ValidateRaw(r, testNow, st)
			if diff := cmp.Diff(want[i], got); diff != "" || bad != nil {
				t.Errorf("%s: clearing the body changed event %d (%v):\n%s", d.name, i, bad, diff)
			}
		}
	}
	raw := event(baseExposure, nil)
	ev, bad := v.Validate(raw, testNow, st)
	if bad != nil {
		t.Fatal(bad)
	}
	clear(raw)
	if string(ev.Attributes) != `{"device":"mobile"}` {
		t.Errorf("clearing the event's JSON changed its attributes to %q", ev.Attributes)
	}
}
