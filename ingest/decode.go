// Package ingest takes events from the API to the database: it decodes and
// validates each event on its own (an invalid event is rejected with its
// index; the others go on), drops the events of opted-out units,
// pseudonymises unit ids when configured, and commits events in groups: the
// requests that arrive together share one transaction (new ids recorded,
// the new events COPYed into place), and each is answered only after that
// commit.
package ingest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/flywheel-oss/flywheel"
	"github.com/flywheel-oss/flywheel/internal/strictjson"
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

	// wire is JSON already decoded while splitting, when the fast decoder
	// could (see decodeEvent); nil leaves it to encoding/json.
	wire *wireEvent
}

// DecodeJSON splits a {"events": [...]} body into raw events. A body that is
// not such an object is an error for the whole request.
//
// A body of the usual form is split in one pass that also decodes each
// event; anything else (an error, a key spelt differently, too many events)
// goes through encoding/json, whose errors are the ones reported, and then
// envelopeKeys, which refuses what encoding/json lets through: a key that
// is "events" only case-insensitively, and "events" twice.
func DecodeJSON(body []byte) ([]RawEvent, error) {
	if out, ok := splitJSON(body); ok {
		return out, nil
	}
	var env struct {
		Events []json.RawMessage `json:"events"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		return nil, envelopeError(err, body)
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

// splitJSON is DecodeJSON for a valid body of at most MaxEvents events
// under the one key "events" spelt so, with nothing after it: it returns
// what encoding/json would, and ok false for every other body.
func splitJSON(body []byte) (out []RawEvent, ok bool) {
	b := bytes.Clone(body) // the events must not share the caller's memory
	i := 0
	for _, token := range [...]string{`{`, `"events"`, `:`, `[`} {
		if i = skipSpace(b, i); !hasAt(b, i, token) {
			return nil, false
		}
		i += len(token)
	}
	out = []RawEvent{}
	var slab wireSlab
	i = skipSpace(b, i)
	if hasAt(b, i, `]`) {
		i++
	} else {
		for {
			if len(out) == MaxEvents {
				return nil, false
			}
			ev := RawEvent{Index: len(out)}
			end := -1
			if hasAt(b, i, `{`) {
				if end = decodeEvent(b, i, slab.next()); end >= 0 {
					ev.wire = slab.keep()
				}
			}
			if end < 0 {
				if end = skipValue(b, i, 0, false); end < 0 {
					return nil, false
				}
			}
			ev.JSON = b[i:end:end]
			if len(out) == 1 {
				// Guess the number of events from the size of the first,
				// rather than grow the slice ten times.
				out = slices.Grow(out, min((len(b)-i)/(len(out[0].JSON)+1)+1, MaxEvents))
			}
			out = append(out, ev)
			i = skipSpace(b, end)
			if hasAt(b, i, `]`) {
				i++
				break
			}
			if !hasAt(b, i, `,`) {
				return nil, false
			}
			i = skipSpace(b, i+1)
		}
	}
	if i = skipSpace(b, i); !hasAt(b, i, `}`) || skipSpace(b, i+1) != len(b) {
		return nil, false
	}
	return out, true
}

// DecodeNDJSON splits a newline-delimited body into raw events, one a line.
// Blank lines are skipped and do not count; a line that is not valid JSON
// is rejected on its own, with its index.
func DecodeNDJSON(body []byte) ([]RawEvent, error) {
	if len(body) >= MaxBodyBytes {
		// Only here can a line exceed the limit of bufio.Scanner, whose
		// error is the one reported.
		return decodeNDJSONScanner(body)
	}
	var out []RawEvent
	var slab wireSlab
	rest := bytes.Clone(body) // the events must not share the caller's memory
	for lineNo := 1; len(rest) > 0; lineNo++ {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if len(out) == MaxEvents {
			return nil, flywheel.Errorf(flywheel.CodePayloadTooLarge, "at most %d events a request", MaxEvents)
		}
		ev := RawEvent{Index: len(out), JSON: line[:len(line):len(line)]}
		if line[0] == '{' && decodeEvent(line, 0, slab.next()) == len(line) {
			ev.wire = slab.keep()
		} else if !json.Valid(line) {
			ev.Err = lineError(line, lineNo)
		}
		if len(out) == 1 { // as in splitJSON
			out = slices.Grow(out, min(len(rest)/(len(out[0].JSON)+1)+1, MaxEvents))
		}
		out = append(out, ev)
	}
	return out, nil
}

// decodeNDJSONScanner is DecodeNDJSON line by line with bufio.Scanner.
func decodeNDJSONScanner(body []byte) ([]RawEvent, error) {
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

// lineError is the rejection of an NDJSON line that is not JSON: it names
// the line, and the field whose value broke when there is one.
func lineError(line []byte, lineNo int) *flywheel.Error {
	bad := strictjson.Check(line, wireEventType, eventOptions)
	if bad == nil { // cannot happen: Check refuses what json.Valid does
		return flywheel.Invalid("", "line %d is not valid JSON", lineNo)
	}
	return flywheel.Invalid(bad.Field, "line %d is not valid JSON: %s", lineNo, bad.Message)
}

// envelopeKeys checks the keys of a {"events": [...]} body that
// encoding/json has decoded: exactly "events", once.
func envelopeKeys(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil // null: encoding/json's meaning (no events) is reported
	}
	seen := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return envelopeError(err, body)
		}
		key, _ := tok.(string)
		switch {
		case key != "events":
			return flywheel.Invalid(key, `unknown field %q: body must be {"events": [...]} (field names are case-sensitive)`, key)
		case seen:
			return flywheel.Invalid("events", `duplicate key "events": a key may appear only once in an object`)
		}
		seen = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return envelopeError(err, body)
		}
	}
	return nil
}

// envelopeError turns encoding/json's error on body into the request's;
// a syntax error names the field whose value broke (strictjson.PathAt),
// such as events[2].value for a NaN.
func envelopeError(err error, body []byte) error {
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

// wireSlab hands out wireEvents from blocks, so that the events of a
// request cost a few allocations rather than one each.
type wireSlab struct {
	block []wireEvent
	dirty bool // the next one was decoded into, and not kept
}

// next returns a zero wireEvent to decode into; keep claims it.
func (s *wireSlab) next() *wireEvent {
	if len(s.block) == cap(s.block) {
		s.block = make([]wireEvent, 0, 128)
	}
	w := &s.block[:len(s.block)+1][len(s.block)]
	if s.dirty {
		*w = wireEvent{}
	}
	s.dirty = true
	return w
}

func (s *wireSlab) keep() *wireEvent {
	s.block, s.dirty = s.block[:len(s.block)+1], false
	return &s.block[len(s.block)-1]
}

// The fast decoder. encoding/json reads an event by scanning it whole for
// syntax, then again to fill the struct through reflection; decodeEvent
// does both in one pass for the events senders actually send: an object
// whose keys are the field names exactly, each at most once, whose string
// fields hold plain strings (no escapes, valid UTF-8) or null, whose value
// is a number or null, and whose other fields hold any JSON (objects with
// plain keys, none twice). For such an event it fills w exactly as the slow
// path (strictjson's checks, then encoding/json) would; it gives up on
// anything else, and the caller then takes the slow path, so that every
// error and every unusual spelling (a key in capitals, an escape, a key
// twice) is decided in one place.

// maxFastDepth bounds the nesting the fast path follows: deeper values
// take the slow path, which refuses them (strictjson.MaxDepth).
const maxFastDepth = strictjson.MaxDepth

// maxFastKeys is the most keys an object of an event's attributes or
// properties may have on the fast path; larger objects take the slow path.
const maxFastKeys = 32

// decodeEvent decodes the object starting at b[i] into w, which must be
// zero, and returns the index just past it, or -1 when it gives up (w is
// then garbage). It never accepts what the slow path refuses.
func decodeEvent(b []byte, i int, w *wireEvent) int {
	// The string fields share one allocation, as they live as long as
	// each other.
	type span struct {
		dst        *string
		start, end int
	}
	var spans [8]span
	nspans, total := 0, 0
	var seen uint16
	i = skipSpace(b, i+1)
	if hasAt(b, i, `}`) {
		return i + 1
	}
	for {
		end := plainString(b, i)
		if end < 0 {
			return -1
		}
		var (
			bit uint16
			str *string
			raw *json.RawMessage
		)
		switch string(b[i+1 : end-1]) {
		case "id":
			bit, str = 1<<0, &w.ID
		case "type":
			bit, str = 1<<1, &w.Type
		case "experiment":
			bit, str = 1<<2, &w.Experiment
		case "variant":
			bit, str = 1<<3, &w.Variant
		case "unit_type":
			bit, str = 1<<4, &w.UnitType
		case "unit_id":
			bit, str = 1<<5, &w.UnitID
		case "event":
			bit, str = 1<<6, &w.Event
		case "customer_id":
			bit, str = 1<<7, &w.CustomerID
		case "timestamp":
			bit, raw = 1<<8, &w.Timestamp
		case "attributes":
			bit, raw = 1<<9, &w.Attributes
		case "properties":
			bit, raw = 1<<10, &w.Properties
		case "value":
			bit = 1 << 11
		default:
			return -1 // unknown, or known in another spelling
		}
		if seen&bit != 0 {
			return -1 // encoding/json keeps the last; leave that to it
		}
		seen |= bit
		if i = skipSpace(b, end); !hasAt(b, i, `:`) {
			return -1
		}
		i = skipSpace(b, i+1)
		switch {
		case hasAt(b, i, "null"):
			// null leaves a string or a pointer as it is; a RawMessage
			// keeps the text.
			if raw != nil {
				*raw = b[i : i+4]
			}
			i += 4
		case str != nil:
			if end = plainString(b, i); end < 0 {
				return -1
			}
			spans[nspans] = span{str, i + 1, end - 1}
			nspans++
			total += end - 1 - (i + 1)
			i = end
		case raw != nil:
			if end = skipValue(b, i, 1, true); end < 0 {
				return -1
			}
			*raw = b[i:end]
			i = end
		default: // value
			if end = skipNumber(b, i); end < 0 {
				return -1
			}
			v, err := strconv.ParseFloat(string(b[i:end]), 64)
			if err != nil {
				return -1 // out of range: encoding/json names the field
			}
			w.Value = &v
			i = end
		}
		if i = skipSpace(b, i); hasAt(b, i, `}`) {
			break
		}
		if !hasAt(b, i, `,`) {
			return -1
		}
		i = skipSpace(b, i+1)
	}
	// A RawMessage is a copy in encoding/json; the attributes and
	// properties are kept with the event, so they must not hold on to the
	// request. The timestamp is only parsed.
	w.Attributes = bytes.Clone(w.Attributes)
	w.Properties = bytes.Clone(w.Properties)
	if nspans > 0 {
		var sb strings.Builder
		sb.Grow(total)
		for _, s := range spans[:nspans] {
			sb.Write(b[s.start:s.end])
		}
		all, off := sb.String(), 0
		for _, s := range spans[:nspans] {
			n := s.end - s.start
			*s.dst = all[off : off+n]
			off += n
		}
	}
	return i + 1
}

// hasAt reports whether b holds s at i.
func hasAt(b []byte, i int, s string) bool {
	return i < len(b) && len(b)-i >= len(s) && string(b[i:i+len(s)]) == s
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// The kinds of byte in a JSON string.
const (
	plainByte   = iota // ASCII, taken as is
	highByte           // 0x80 and up, taken as is (encoding/json checks UTF-8 when decoding)
	quoteByte          // the end
	escapeByte         // a backslash
	controlByte        // below 0x20: invalid
)

// byteKinds is the kind of every byte.
var byteKinds = func() (k [256]uint8) {
	for c := range k {
		switch {
		case c < 0x20:
			k[c] = controlByte
		case c == '"':
			k[c] = quoteByte
		case c == '\\':
			k[c] = escapeByte
		case c >= utf8.RuneSelf:
			k[c] = highByte
		}
	}
	return k
}()

// plainString returns the index just past the string starting at b[i]
// when its text is its value: no escape, and valid UTF-8 (which
// encoding/json would replace); else -1, also when b[i] is not a quote.
func plainString(b []byte, i int) int {
	if !hasAt(b, i, `"`) {
		return -1
	}
	ascii := true
	for j := i + 1; j < len(b); j++ {
		switch byteKinds[b[j]] {
		case plainByte:
		case highByte:
			ascii = false
		case quoteByte:
			if !ascii && !utf8.Valid(b[i+1:j]) {
				return -1
			}
			return j + 1
		default:
			return -1
		}
	}
	return -1
}

// skipValue returns the index just past the JSON value starting at b[i]
// (not white space), or -1 if it is not valid JSON, by the grammar
// encoding/json checks, or nests deeper than maxFastDepth. With keys set
// it also gives up on an object that has a key twice, a key written with
// an escape or in invalid UTF-8 (which only decoding can compare), or more
// than maxFastKeys keys: the slow path (strictjson) decides those, and
// refuses a key given twice.
func skipValue(b []byte, i, depth int, keys bool) int {
	if i >= len(b) {
		return -1
	}
	switch c := b[i]; {
	case c == '"':
		return skipString(b, i)
	case c == '-' || c >= '0' && c <= '9':
		return skipNumber(b, i)
	case c == '{' || c == '[':
		if depth >= maxFastDepth {
			return -1
		}
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		if i = skipSpace(b, i+1); i < len(b) && b[i] == closer {
			return i + 1
		}
		// The keys seen so far, as spans of b: on the stack, so that
		// checking them allocates nothing.
		var seen [maxFastKeys][2]int32
		n := 0
		for {
			if c == '{' {
				start := i
				if keys {
					i = plainString(b, i)
				} else {
					i = skipString(b, i)
				}
				if i < 0 {
					return -1
				}
				if keys {
					key := b[start+1 : i-1]
					for _, k := range seen[:n] {
						if string(b[k[0]:k[1]]) == string(key) {
							return -1
						}
					}
					if n == maxFastKeys {
						return -1
					}
					seen[n] = [2]int32{int32(start + 1), int32(i - 1)}
					n++
				}
				if i = skipSpace(b, i); !hasAt(b, i, `:`) {
					return -1
				}
				i = skipSpace(b, i+1)
			}
			if i = skipValue(b, i, depth+1, keys); i < 0 {
				return -1
			}
			if i = skipSpace(b, i); i >= len(b) {
				return -1
			}
			switch b[i] {
			case closer:
				return i + 1
			case ',':
				i = skipSpace(b, i+1)
			default:
				return -1
			}
		}
	}
	for _, lit := range [...]string{"true", "false", "null"} {
		if hasAt(b, i, lit) {
			return i + len(lit)
		}
	}
	return -1
}

// skipString returns the index just past the string starting at b[i], or
// -1, also when b[i] is not a quote. Like encoding/json, it takes any byte
// but a control character as is (invalid UTF-8 included) and checks the
// escapes.
func skipString(b []byte, i int) int {
	if !hasAt(b, i, `"`) {
		return -1
	}
	for i++; i < len(b); i++ {
		switch byteKinds[b[i]] {
		case plainByte, highByte:
		case quoteByte:
			return i + 1
		case controlByte:
			return -1
		case escapeByte:
			if i++; i >= len(b) {
				return -1
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(b)-i <= 4 {
					return -1
				}
				for _, h := range b[i+1 : i+5] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return -1
					}
				}
				i += 4
			default:
				return -1
			}
		}
	}
	return -1
}

// skipNumber returns the index just past the JSON number starting at b[i],
// or -1: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func skipNumber(b []byte, i int) int {
	digits := func(i int) int { // one or more
		j := i
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		if j == i {
			return -1
		}
		return j
	}
	if hasAt(b, i, "-") {
		i++
	}
	switch {
	case hasAt(b, i, "0"):
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(i)
	default:
		return -1
	}
	if hasAt(b, i, ".") {
		if i = digits(i + 1); i < 0 {
			return -1
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i = digits(i); i < 0 {
			return -1
		}
	}
	return i
}
