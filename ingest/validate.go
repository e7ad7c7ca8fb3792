package ingest

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/internal/strictjson"
	"github.com/flywheel-oss/flywheel/live"
)

// wireEvent is an event as sent (API.md, Events).
type wireEvent struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	Experiment string          `json:"experiment"`
	Variant    string          `json:"variant"`
	UnitType   string          `json:"unit_type"`
	UnitID     string          `json:"unit_id"`
	Timestamp  json.RawMessage `json:"timestamp"` // parsed in Validate, to name the field in errors
	Attributes json.RawMessage `json:"attributes"`
	Event      string          `json:"event"`
	Value      *float64        `json:"value"`
	Properties json.RawMessage `json:"properties"`
	CustomerID string          `json:"customer_id"`
}

// Limits of one event.
const (
	maxIDLen     = 256
	maxNameLen   = 128
	maxJSONBytes = 16 << 10
	// MaxFuture is how far ahead of the server's clock a timestamp may be.
	MaxFuture = 24 * time.Hour
)

// Pseudonymizer turns unit ids into HMAC-SHA256 hex digests, so that the
// database never holds a raw id; nil leaves ids as they are.
type Pseudonymizer struct {
	key  []byte
	macs sync.Pool // of *macState, so that an id costs its digest only
}

// macState is an HMAC keyed with the pseudonymizer's key and its buffers.
type macState struct {
	mac hash.Hash
	in  []byte
	sum [sha256.Size]byte
	hex [2 * sha256.Size]byte
}

// NewPseudonymizer returns a pseudonymizer for key, or nil for an empty key.
func NewPseudonymizer(key string) *Pseudonymizer {
	if key == "" {
		return nil
	}
	return &Pseudonymizer{key: []byte(key)}
}

// ID returns the stored form of a unit id.
func (p *Pseudonymizer) ID(id string) string {
	if p == nil {
		return id
	}
	m, _ := p.macs.Get().(*macState)
	if m == nil {
		m = &macState{mac: hmac.New(sha256.New, p.key)}
	} else {
		m.mac.Reset()
	}
	m.in = append(m.in[:0], id...)
	m.mac.Write(m.in)
	hex.Encode(m.hex[:], m.mac.Sum(m.sum[:0]))
	out := string(m.hex[:])
	if cap(m.in) <= 4*maxIDLen { // keep no outsized buffer
		p.macs.Put(m)
	}
	return out
}

// Validator checks one event at a time against the live configuration.
type Validator struct {
	IDs *Pseudonymizer
}

// Validate decodes and checks one event received at now. st is the live
// configuration (the experiments exposures may name).
func (v *Validator) Validate(raw []byte, now time.Time, st *live.State) (flywheel.Event, *flywheel.Error) {
	var w wireEvent
	// The fast decoder takes the usual event and gives up on anything
	// else, which encoding/json then decodes or names the error of.
	end := -1
	if i := skipSpace(raw, 0); hasAt(raw, i, `{`) {
		end = decodeEvent(raw, i, &w)
	}
	if end < 0 || skipSpace(raw, end) != len(raw) {
		w = wireEvent{}
		if bad := decodeSlow(raw, &w); bad != nil {
			return flywheel.Event{}, bad
		}
	}
	return v.check(&w, now, st)
}

// eventOptions are strictjson's rules for one event. The text inside
// attributes and properties is left to checkObject, which normalises
// invalid UTF-8 and lone surrogates (as senders' user data may hold them)
// and refuses NUL, naming the object.
var eventOptions = strictjson.Options{Subject: "event", LenientText: true}

// decodeSlow decodes an event the fast decoder gave up on: strictjson's
// checks (exact field names, no key twice at any depth, at most
// strictjson.MaxDepth levels, identifiers in valid UTF-8 without NUL),
// then encoding/json.
func decodeSlow(raw []byte, w *wireEvent) *flywheel.Error {
	if bad := strictjson.Check(raw, wireEventType, eventOptions); bad != nil {
		return bad
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(w); err != nil {
		return fieldError(err)
	}
	return nil
}

var wireEventType = reflect.TypeFor[wireEvent]()

// ValidateRaw is Validate(r.JSON, now, st) for an event from DecodeJSON or
// DecodeNDJSON, without decoding again what they decoded while splitting;
// an event they could not split out is rejected with r.Err.
func (v *Validator) ValidateRaw(r RawEvent, now time.Time, st *live.State) (flywheel.Event, *flywheel.Error) {
	switch {
	case r.Err != nil:
		return flywheel.Event{}, r.Err
	case r.wire != nil:
		return v.check(r.wire, now, st)
	}
	return v.Validate(r.JSON, now, st)
}

// check validates a decoded event.
func (v *Validator) check(w *wireEvent, now time.Time, st *live.State) (flywheel.Event, *flywheel.Error) {
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
	if !validUnitType(w.UnitType) {
		return e, flywheel.Invalid("unit_type", "unit_type must match ^[a-z_]{1,32}$")
	}
	if bad := checkText("unit_id", w.UnitID, maxIDLen, true); bad != nil {
		return e, bad
	}
	e.UnitID = v.IDs.ID(w.UnitID)
	var ts *time.Time
	// w.Timestamp is valid JSON with no space around it, so this is what
	// json.Unmarshal(w.Timestamp, &ts) does, without scanning it again.
	if len(w.Timestamp) > 0 && string(w.Timestamp) != "null" {
		var t time.Time
		if err := t.UnmarshalJSON(w.Timestamp); err != nil {
			return e, flywheel.Invalid("timestamp", "timestamp must be an RFC 3339 string such as 2026-11-23T10:00:00Z")
		}
		ts = &t
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
	if e.Attributes, bad = checkObject("attributes", w.Attributes); bad != nil {
		return e, bad
	}
	if e.Properties, bad = checkObject("properties", w.Properties); bad != nil {
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
		return e, v.exposure(&e, w, st)
	case flywheel.EventTrack:
		for _, m := range []*flywheel.Error{misplaced("experiment", w.Experiment, "exposure"), misplaced("variant", w.Variant, "exposure"), misplaced("customer_id", w.CustomerID, "identify")} {
			if m != nil {
				return e, m
			}
		}
		if bad := checkText("event", w.Event, maxNameLen, true); bad != nil {
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
		if bad := checkText("customer_id", w.CustomerID, maxIDLen, true); bad != nil {
			return e, bad
		}
		if w.UnitType == "customer" && w.CustomerID == w.UnitID {
			return e, flywheel.Invalid("customer_id", "a customer cannot be linked to itself")
		}
		e.CustomerID = v.IDs.ID(w.CustomerID)
		return e, nil
	case "":
		return e, flywheel.Invalid("type", "type is required: exposure, track or identify")
	}
	return e, flywheel.Invalid("type", "type must be exposure, track or identify, not %q", w.Type)
}

func (v *Validator) exposure(e *flywheel.Event, w *wireEvent, st *live.State) *flywheel.Error {
	if w.Experiment == "" {
		return flywheel.Invalid("experiment", "an exposure names its experiment")
	}
	exp, ok := st.Exposable(w.Experiment)
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

// fieldError names the field of a per-event decoding error.
func fieldError(err error) *flywheel.Error {
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

// validUnitType reports whether s matches ^[a-z_]{1,32}$.
func validUnitType(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && c != '_' {
			return false
		}
	}
	return true
}

// checkText enforces length and the one character PostgreSQL text cannot
// hold (NUL).
func checkText(field, s string, max int, required bool) *flywheel.Error {
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

// checkObject accepts an absent value, null, or a JSON object within the
// size limit, and returns it in a form jsonb accepts: escapes that
// PostgreSQL refuses (lone surrogates) and invalid UTF-8 are normalised by a
// round trip through encoding/json, and NUL characters are refused.
func checkObject(field string, raw json.RawMessage) (json.RawMessage, *flywheel.Error) {
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
	if normalise || hasExponent(t) {
		dec := json.NewDecoder(bytes.NewReader(t))
		dec.UseNumber() // numbers keep their digits through the round trip
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, flywheel.Invalid(field, "%s is not valid JSON", field)
		}
		if problem := unstorable(v); problem != "" {
			return nil, flywheel.Invalid(field, "%s %s", field, problem)
		}
		if normalise {
			t, _ = json.Marshal(v) // decoded JSON always re-encodes
		}
	}
	return t, nil
}

// hasExponent reports whether t may hold a number with an exponent (a digit
// followed by e or E, possibly inside a string): only those can exceed what
// PostgreSQL's numeric (and so jsonb) holds, since the size limit keeps
// plain digits well within it.
func hasExponent(t []byte) bool {
	for i := 1; i < len(t); i++ {
		if (t[i] == 'e' || t[i] == 'E') && t[i-1] >= '0' && t[i-1] <= '9' {
			return true
		}
	}
	return false
}

// unstorable names what in v (decoded with UseNumber) jsonb refuses, or
// returns "": a NUL character (in a key or a string), or a number that
// PostgreSQL's numeric cannot hold, with an exponent beyond ±1000 (13 and
// older refuse it) or more than 16383 digits after the decimal point once
// the exponent is applied. Such a value would fail the whole group commit.
func unstorable(v any) string {
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
			if p := unstorable(k); p != "" {
				return p
			}
			if p := unstorable(y); p != "" {
				return p
			}
		}
	case []any:
		for _, y := range x {
			if p := unstorable(y); p != "" {
				return p
			}
		}
	}
	return ""
}
