package sdk

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// The events an app records are encoded here, by hand, into the JSON of
// POST /v1/events: the delivery goroutine turns each queued record (see
// record.go) into JSON, where encoding/json's reflection would cost
// several microseconds and a dozen allocations per event. The output is
// what encoding/json would send for the same event (keys of attribute maps
// may come in another order); TestRecordJSONMatchesEncodingJSON,
// FuzzRecordObject and FuzzAppendJSONValue hold it to that.

// outEvent is an event to record: wireEvent's fields, with attributes and
// properties as the app's maps (read during the call only).
type outEvent struct {
	typ, experiment, variant string
	unitType, unitID         string
	event, customerID        string
	value                    float64
	hasValue                 bool // a pointer to value would escape: a heap allocation per Track
	attributes, properties   map[string]any
}

// errObject is an attributes or properties map that cannot be sent: a value
// JSON cannot hold (NaN, a channel...), too deep, or more than
// maxObjectBytes of JSON.
type errObject struct {
	field string // "attributes" or "properties"
	err   error
}

func (e *errObject) Error() string { return e.field + ": " + e.err.Error() }
func (e *errObject) Unwrap() error { return e.err }

// maxDepth bounds nested attribute values (a map that holds itself would
// otherwise recurse forever).
const maxDepth = 32

var errTooDeep = fmt.Errorf("nested deeper than %d levels", maxDepth)

// appendUUID appends the canonical text of id.
func appendUUID(b []byte, id uuid.UUID) []byte {
	const hex = "0123456789abcdef"
	for i, c := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hex[c>>4], hex[c&0xf])
	}
	return b
}

// newEventID returns a UUIDv7 for an event recorded at now: 48 bits of Unix
// milliseconds, then 74 random bits from the runtime's ChaCha8 generator
// (math/rand/v2, seeded from the operating system), without a system call
// or an allocation. Ids are unique by their randomness and ordered by time
// to the millisecond, which is what the server's id index wants.
func newEventID(now time.Time) uuid.UUID {
	var id uuid.UUID
	hi := uint64(now.UnixMilli())<<16 | 0x7000 | rand.Uint64()&0x0fff
	lo := rand.Uint64()&^(3<<62) | 2<<62 // RFC 9562 variant 10
	binary.BigEndian.PutUint64(id[:8], hi)
	binary.BigEndian.PutUint64(id[8:], lo)
	return id
}

// appendString appends s as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD, as encoding/json
// does (which also escapes <, > and &; both decode to the same text). It
// takes the app's strings and a record's bytes alike, without copying
// either.
func appendString[S ~string | ~[]byte](b []byte, s S) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		var rb [utf8.UTFMax]byte
		r, size := utf8.DecodeRune(rb[:copy(rb[:], s[i:])])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' { // as encoding/json, for JavaScript
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

var errNotFinite = errors.New("a number that is not finite (NaN or infinite)")

// appendFloat appends f as encoding/json formats a float64.
func appendFloat(b []byte, f float64) ([]byte, error) { return appendFloatBits(b, f, 64) }

// appendFloatBits appends f as encoding/json formats a float of that many
// bits: the shortest text that reads back as the same value.
func appendFloatBits(b []byte, f float64, bits int) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return b, errNotFinite
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 {
		// encoding/json compares a float32 as a float32: 1e-6 as a float32
		// is below 1e-6 as a float64, yet written 0.000001.
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	b = strconv.AppendFloat(b, f, format, -1, bits)
	if format == 'e' { // e-09 to e-9, as encoding/json
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}

// appendMap appends an attributes-style object.
func appendMap(b []byte, m map[string]any, depth int) ([]byte, error) {
	if depth >= maxDepth {
		return b, errTooDeep
	}
	if m == nil {
		return append(b, "null"...), nil
	}
	b = append(b, '{')
	first := true
	var err error
	for k, v := range m {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendString(b, k)
		b = append(b, ':')
		if b, err = appendValue(b, v, depth+1); err != nil {
			return b, fmt.Errorf("%q: %w", k, err)
		}
	}
	return append(b, '}'), nil
}

// appendValue appends one JSON value: the types encoding/json decodes into
// (string, float64, bool, nil, []any, map[string]any) and Go's other
// numbers by hand; anything else through encoding/json.
func appendValue(b []byte, v any, depth int) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return appendString(b, x), nil
	case float64:
		return appendFloat(b, x)
	case bool:
		return strconv.AppendBool(b, x), nil
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case int32:
		return strconv.AppendInt(b, int64(x), 10), nil
	case uint:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint64:
		return strconv.AppendUint(b, x, 10), nil
	case float32:
		return appendFloatBits(b, float64(x), 32)
	case json.Number:
		if x == "" {
			return append(b, '0'), nil
		}
		if _, err := strconv.ParseFloat(string(x), 64); err != nil {
			return b, fmt.Errorf("invalid number %q", string(x))
		}
		return append(b, x...), nil
	case map[string]any:
		return appendMap(b, x, depth)
	case []any:
		if depth >= maxDepth {
			return b, errTooDeep
		}
		if x == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '[')
		var err error
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendValue(b, e, depth+1); err != nil {
				return b, err
			}
		}
		return append(b, ']'), nil
	}
	// Rare types (structs, typed slices and maps, other integers): the
	// standard encoder, which also rejects what JSON cannot hold.
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && rv.IsNil() {
		return append(b, "null"...), nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return b, err
	}
	return append(b, raw...), nil
}
