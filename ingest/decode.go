// Package ingest takes events from the API to the database: it decodes and
// validates each event on its own (an invalid event is rejected with its
// index; the others go on), drops the events of opted-out units,
// pseudonymises unit ids when configured, and commits events in groups: the
// requests that arrive together share one transaction (COPY into staging,
// dedupe by id, insert), and each is answered only after that commit.
package ingest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/flywheel-oss/flywheel"
)

// Limits of one request.
const (
	MaxEvents    = 10000
	MaxBodyBytes = 5 << 20
)

// RawEvent is one event as sent, with its index in the request.
type RawEvent struct {
	Index int
	JSON  []byte
	Err   *flywheel.Error // set when the event could not even be split out
}

// DecodeJSON splits a {"events": [...]} body into raw events. A body that is
// not such an object is an error for the whole request.
func DecodeJSON(body []byte) ([]RawEvent, error) {
	var env struct {
		Events []json.RawMessage `json:"events"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		return nil, envelopeError(err)
	}
	if _, err := dec.Token(); err != io.EOF { // More() misses a stray } or ]
		return nil, flywheel.Invalid("", "request body must hold exactly one JSON object")
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

// DecodeNDJSON splits a newline-delimited body into raw events, one a line.
// Blank lines are skipped and do not count; a line that is not valid JSON
// is rejected on its own, with its index.
func DecodeNDJSON(body []byte) ([]RawEvent, error) {
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
			ev.Err = flywheel.Invalid("", "line %d is not valid JSON", lineNo)
		}
		out = append(out, ev)
	}
	if err := sc.Err(); err != nil {
		return nil, flywheel.Invalid("", "reading NDJSON: %v", err)
	}
	return out, nil
}

func envelopeError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return flywheel.Invalid("", `request body is empty; send {"events": [...]}`)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return flywheel.Invalid("", "malformed JSON: unexpected end of input")
	case errors.As(err, &syn):
		return flywheel.Invalid("", "malformed JSON at byte %d: %v", syn.Offset, syn)
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
