package sdk

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
)

// A record is an event as the app's call leaves it in the queue: a fixed
// header, then the bytes of its fields, its attributes or properties in a
// compact binary form. The app's call (a unit's first Assign, Track,
// Identify) only copies: JSON, the event id and the timestamp's text are
// made by the delivery goroutine when it takes the event for sending
// (appendRecordJSON), once per event, and the JSON is what every retry
// sends, so an event keeps its id. The maps are still read during the call
// only, as the app may change them afterwards, and an event that could
// never be sent (a value JSON cannot hold, an object over 16 KiB) is still
// refused by the call.
//
// The header (all little endian):
//
//	0   flags byte (flagValue)
//	8   int64 timestamp, Unix nanoseconds
//	16  float64 value
//	24  uint32 an upper bound of the event's JSON size (queue.take's limit)
//	28  9 × uint32 the lengths of the fields, fType to fProperties
//	64  the fields' bytes, in the same order
const (
	recFlags  = 0
	recTime   = 8
	recValue  = 16
	recBound  = 24
	recLens   = 28
	recHeader = recLens + 4*numRecFields
)

// The fields of a record, in the order of their bytes.
const (
	fType = iota
	fExperiment
	fVariant
	fUnitType
	fUnitID
	fEvent
	fCustomerID
	fAttributes // an object (see appendObject)
	fProperties // an object
	numRecFields
)

const flagValue = 1 // the event has a value

// An object (attributes, properties) is a sequence of entries: a tag byte,
// the key (uint32 length, bytes), then the value as the tag says. Values of
// the types an app passes most (those encoding/json decodes into, Go's
// integers) are copied as they are; others (nested maps and slices,
// json.Number, structs...) are encoded as JSON by the call, which also
// checks them.
const (
	tagNull    = iota
	tagFalse   // no value bytes
	tagTrue    // no value bytes
	tagString  // uint32 length, bytes
	tagFloat64 // 8 bytes, the bits
	tagFloat32 // 8 bytes, the bits of the float64 it converts to exactly
	tagInt     // 8 bytes, an int64
	tagUint    // 8 bytes, a uint64
	tagJSON    // uint32 length, JSON text
)

// Upper bounds of the JSON of one value, for the size checks: a string's
// bytes escape to at most 6 bytes each (\u00XX, \ufffd; U+2028 takes 3
// bytes and escapes to 6), plus its quotes; a float64 is at most 25 bytes
// ("-0.0000012345678901234567", 17 digits in 'f' form at 1e-6); an integer
// 20 ("-9223372036854775808").
const (
	maxFloatJSON = 25
	maxIntJSON   = 20
	// maxEventJSON bounds an event's JSON beside its fields' escaped
	// bytes: the keys, quotes and commas (about 150 bytes), the id (36),
	// the timestamp (at most 35) and the value.
	maxEventJSON = 256
)

func stringBound(n int) int { return 2 + 6*n }

// appendRecord appends the record of ev recorded at ts (Unix nanoseconds).
// It fails only for attributes or properties that cannot be sent (an
// *errObject); b is then returned as it was.
func appendRecord(b []byte, ts int64, ev *outEvent) ([]byte, error) {
	start := len(b)
	b = append(b, make([]byte, recHeader)...)
	b = append(b, ev.typ...)
	b = append(b, ev.experiment...)
	b = append(b, ev.variant...)
	b = append(b, ev.unitType...)
	b = append(b, ev.unitID...)
	b = append(b, ev.event...)
	b = append(b, ev.customerID...)
	bound := maxEventJSON + 6*(len(b)-start-recHeader)
	var attrs, props int
	if len(ev.attributes) > 0 {
		at, n := len(b), 0
		var err error
		if b, n, err = appendObject(b, "attributes", ev.attributes); err != nil {
			return b[:start], err
		}
		attrs, bound = len(b)-at, bound+n
	}
	if len(ev.properties) > 0 {
		at, n := len(b), 0
		var err error
		if b, n, err = appendObject(b, "properties", ev.properties); err != nil {
			return b[:start], err
		}
		props, bound = len(b)-at, bound+n
	}
	h := b[start : start+recHeader : start+recHeader]
	if ev.hasValue {
		h[recFlags] = flagValue
	}
	le := binary.LittleEndian
	le.PutUint64(h[recTime:], uint64(ts))
	le.PutUint64(h[recValue:], math.Float64bits(ev.value))
	le.PutUint32(h[recBound:], uint32(min(bound, math.MaxUint32)))
	le.PutUint32(h[recLens+4*fType:], uint32(len(ev.typ)))
	le.PutUint32(h[recLens+4*fExperiment:], uint32(len(ev.experiment)))
	le.PutUint32(h[recLens+4*fVariant:], uint32(len(ev.variant)))
	le.PutUint32(h[recLens+4*fUnitType:], uint32(len(ev.unitType)))
	le.PutUint32(h[recLens+4*fUnitID:], uint32(len(ev.unitID)))
	le.PutUint32(h[recLens+4*fEvent:], uint32(len(ev.event)))
	le.PutUint32(h[recLens+4*fCustomerID:], uint32(len(ev.customerID)))
	le.PutUint32(h[recLens+4*fAttributes:], uint32(attrs))
	le.PutUint32(h[recLens+4*fProperties:], uint32(props))
	return b, nil
}

// appendObject appends m as an object's entries and returns an upper bound
// of its JSON size, the exact size when the bound is over maxObjectBytes.
// A value JSON cannot hold, nesting deeper than maxDepth or more than
// maxObjectBytes of JSON is an *errObject naming field.
func appendObject(b []byte, field string, m map[string]any) ([]byte, int, error) {
	start := len(b)
	bound := 2 // the braces; the commas are counted once per entry
	for k, v := range m {
		tag := len(b)
		b = append(b, tagNull)
		b = appendBytes(b, k)
		bound += 1 + stringBound(len(k)) + 1
		var f float64
		switch x := v.(type) {
		case nil:
			bound += 4
		case string:
			b[tag] = tagString
			b = appendBytes(b, x)
			bound += stringBound(len(x))
		case float64:
			b[tag], f = tagFloat64, x
		case bool:
			b[tag] = tagFalse
			if x {
				b[tag] = tagTrue
			}
			bound += 5
		case int:
			b = appendNumber(b, tag, tagInt, uint64(x))
		case int64:
			b = appendNumber(b, tag, tagInt, uint64(x))
		case int32:
			b = appendNumber(b, tag, tagInt, uint64(x))
		case int16:
			b = appendNumber(b, tag, tagInt, uint64(x))
		case int8:
			b = appendNumber(b, tag, tagInt, uint64(x))
		case uint:
			b = appendNumber(b, tag, tagUint, uint64(x))
		case uint64:
			b = appendNumber(b, tag, tagUint, x)
		case uint32:
			b = appendNumber(b, tag, tagUint, uint64(x))
		case uint16:
			b = appendNumber(b, tag, tagUint, uint64(x))
		case uint8:
			b = appendNumber(b, tag, tagUint, uint64(x))
		case float32:
			b[tag], f = tagFloat32, float64(x)
		default:
			sp := scratch.Get().(*[]byte)
			raw, err := appendValue((*sp)[:0], v, 1)
			if err == nil {
				b[tag] = tagJSON
				b = binary.LittleEndian.AppendUint32(b, uint32(len(raw)))
				b = append(b, raw...)
				bound += len(raw)
			}
			putScratch(sp, raw)
			if err != nil {
				return b[:start], 0, &errObject{field: field, err: fmt.Errorf("%q: %w", k, err)}
			}
		}
		switch b[tag] {
		case tagFloat64, tagFloat32:
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return b[:start], 0, &errObject{field: field, err: fmt.Errorf("%q: %w", k, errNotFinite)}
			}
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
			bound += maxFloatJSON
		case tagInt, tagUint:
			bound += maxIntJSON
		}
	}
	if bound > maxObjectBytes { // rare: big objects pay for an exact size
		sp := scratch.Get().(*[]byte)
		j := appendObjectJSON((*sp)[:0], b[start:])
		n := len(j)
		putScratch(sp, j)
		if n > maxObjectBytes {
			return b[:start], 0, &errObject{field: field, err: fmt.Errorf("%d bytes of JSON, more than %d", n, maxObjectBytes)}
		}
		bound = n
	}
	return b, bound, nil
}

// scratch holds buffers for what does not fit, or cannot be, on the
// caller's stack: large records, the JSON of a large object whose exact
// size is checked, and the values appendObject encodes as JSON (the
// recursive encoder's buffer escapes to the heap, as Go's escape analysis
// gives up on recursion).
var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// putScratch returns a buffer from scratch, now b, unless it grew large.
func putScratch(sp *[]byte, b []byte) {
	if cap(b) <= 64<<10 {
		*sp = b[:0]
		scratch.Put(sp)
	}
}

// appendNumber sets the entry's tag at b[tag] and appends its 8 bytes.
func appendNumber(b []byte, tag int, t byte, x uint64) []byte {
	b[tag] = t
	return binary.LittleEndian.AppendUint64(b, x)
}

// appendBytes appends s with its uint32 length first.
func appendBytes(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// recordBound returns the upper bound of rec's JSON size.
func recordBound(rec []byte) int { return int(binary.LittleEndian.Uint32(rec[recBound:])) }

// recordTime returns the time rec was recorded.
func recordTime(rec []byte) time.Time {
	return time.Unix(0, int64(binary.LittleEndian.Uint64(rec[recTime:])))
}

// appendRecordJSON appends the JSON object of POST /v1/events of rec with
// the given id, in wireEvent's field order and with its omitempty rules.
func appendRecordJSON(b []byte, rec []byte, id uuid.UUID) []byte {
	var fields [numRecFields][]byte
	p := recHeader
	for i := range fields {
		n := int(binary.LittleEndian.Uint32(rec[recLens+4*i:]))
		fields[i] = rec[p : p+n]
		p += n
	}
	b = append(b, `{"id":"`...)
	b = appendUUID(b, id)
	b = append(b, `","type":`...)
	b = appendString(b, fields[fType])
	if len(fields[fExperiment]) > 0 {
		b = append(b, `,"experiment":`...)
		b = appendString(b, fields[fExperiment])
	}
	if len(fields[fVariant]) > 0 {
		b = append(b, `,"variant":`...)
		b = appendString(b, fields[fVariant])
	}
	b = append(b, `,"unit_type":`...)
	b = appendString(b, fields[fUnitType])
	b = append(b, `,"unit_id":`...)
	b = appendString(b, fields[fUnitID])
	b = append(b, `,"timestamp":"`...)
	b = recordTime(rec).UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if len(fields[fAttributes]) > 0 {
		b = append(b, `,"attributes":`...)
		b = appendObjectJSON(b, fields[fAttributes])
	}
	if len(fields[fEvent]) > 0 {
		b = append(b, `,"event":`...)
		b = appendString(b, fields[fEvent])
	}
	if rec[recFlags]&flagValue != 0 {
		b = append(b, `,"value":`...)
		b, _ = appendFloat(b, math.Float64frombits(binary.LittleEndian.Uint64(rec[recValue:]))) // checked by Track
	}
	if len(fields[fProperties]) > 0 {
		b = append(b, `,"properties":`...)
		b = appendObjectJSON(b, fields[fProperties])
	}
	if len(fields[fCustomerID]) > 0 {
		b = append(b, `,"customer_id":`...)
		b = appendString(b, fields[fCustomerID])
	}
	return append(b, '}')
}

// appendObjectJSON appends the JSON of an object's entries, which
// appendObject made (and checked).
func appendObjectJSON(b []byte, obj []byte) []byte {
	b = append(b, '{')
	for p := 0; p < len(obj); {
		if p > 0 {
			b = append(b, ',')
		}
		tag := obj[p]
		var key []byte
		key, p = readBytes(obj, p+1)
		b = appendString(b, key)
		b = append(b, ':')
		switch tag {
		case tagNull:
			b = append(b, "null"...)
		case tagFalse:
			b = append(b, "false"...)
		case tagTrue:
			b = append(b, "true"...)
		case tagString:
			var s []byte
			s, p = readBytes(obj, p)
			b = appendString(b, s)
		case tagJSON:
			var raw []byte
			raw, p = readBytes(obj, p)
			b = append(b, raw...)
		default:
			x := binary.LittleEndian.Uint64(obj[p:])
			p += 8
			switch tag {
			case tagFloat64:
				b, _ = appendFloatBits(b, math.Float64frombits(x), 64) // checked by appendObject
			case tagFloat32:
				b, _ = appendFloatBits(b, math.Float64frombits(x), 32)
			case tagInt:
				b = strconv.AppendInt(b, int64(x), 10)
			case tagUint:
				b = strconv.AppendUint(b, x, 10)
			}
		}
	}
	return append(b, '}')
}

// readBytes reads the length-prefixed bytes at p and returns them and the
// position after them.
func readBytes(obj []byte, p int) ([]byte, int) {
	n := int(binary.LittleEndian.Uint32(obj[p:]))
	p += 4
	return obj[p : p+n], p + n
}
