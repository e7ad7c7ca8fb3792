package assign

import (
	"encoding/json"
	"unicode"
	"unicode/utf8"
)

// asNumber returns v as a float64 when it is a number: float64 (as
// encoding/json decodes), any other Go integer or float kind, or
// json.Number.
func asNumber(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case int32:
		return float64(x), true
	case int16:
		return float64(x), true
	case int8:
		return float64(x), true
	case uint:
		return float64(x), true
	case uint64:
		return float64(x), true
	case uint32:
		return float64(x), true
	case uint16:
		return float64(x), true
	case uint8:
		return float64(x), true
	case float32:
		return float64(x), true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	}
	return 0, false
}

// typeName is GrowthBook's $type of a value. A missing attribute is null.
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case bool:
		return "boolean"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	if _, ok := asNumber(v); ok {
		return "number"
	}
	return "unknown"
}

// deepEqual compares JSON values structurally and strictly typed: numbers
// by value, arrays in order, objects by keys regardless of order.
func deepEqual(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !deepEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, xv := range x {
			yv, ok := y[k]
			if !ok || !deepEqual(xv, yv) {
				return false
			}
		}
		return true
	}
	f, ok := asNumber(a)
	if !ok {
		return false
	}
	g, ok := asNumber(b)
	return ok && f == g
}

// appendLower appends the lower-case form of s to dst, rune by rune (as
// strings.ToLower does outside of special cases). It allocates only when
// dst is too small.
func appendLower(dst []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			dst = append(dst, c)
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		dst = utf8.AppendRune(dst, unicode.ToLower(r))
		i += size
	}
	return dst
}

// equalFold reports whether a and b are equal once lower-cased.
func equalFold(a, b string) bool {
	for a != "" && b != "" {
		ra, na := utf8.DecodeRuneInString(a)
		rb, nb := utf8.DecodeRuneInString(b)
		if ra != rb && unicode.ToLower(ra) != unicode.ToLower(rb) {
			return false
		}
		a, b = a[na:], b[nb:]
	}
	return a == b
}

// valueSet is the compiled operand of $in and friends, split by type so
// that membership is a typed comparison or a map lookup.
type valueSet struct {
	fold     bool                // strings compare case-insensitively
	strs     []string            // lower-cased when fold
	strIndex map[string]struct{} // strs as a set, for long lists
	nums     []float64
	hasTrue  bool
	hasFalse bool
	hasNull  bool
	others   []any // arrays and objects, compared structurally
}

// setIndexMin is the list length from which strings are looked up in a map
// rather than scanned.
const setIndexMin = 8

func newValueSet(items []any, fold bool) *valueSet {
	s := &valueSet{fold: fold}
	for _, it := range items {
		switch x := it.(type) {
		case nil:
			s.hasNull = true
		case string:
			if fold {
				x = string(appendLower(nil, x))
			}
			s.strs = append(s.strs, x)
		case float64:
			s.nums = append(s.nums, x)
		case bool:
			if x {
				s.hasTrue = true
			} else {
				s.hasFalse = true
			}
		default:
			s.others = append(s.others, x)
		}
	}
	if len(s.strs) >= setIndexMin {
		s.strIndex = make(map[string]struct{}, len(s.strs))
		for _, x := range s.strs {
			s.strIndex[x] = struct{}{}
		}
	}
	return s
}

// contains reports whether v is in the set.
func (s *valueSet) contains(v any) bool {
	switch x := v.(type) {
	case string:
		if s.fold {
			var buf [64]byte
			return s.hasBytes(appendLower(buf[:0], x))
		}
		return s.hasString(x)
	case nil:
		return s.hasNull
	case bool:
		if x {
			return s.hasTrue
		}
		return s.hasFalse
	case []any, map[string]any:
		for _, o := range s.others {
			if deepEqual(x, o) {
				return true
			}
		}
		return false
	}
	if f, ok := asNumber(v); ok {
		for _, n := range s.nums {
			if f == n {
				return true
			}
		}
	}
	return false
}

func (s *valueSet) hasString(x string) bool {
	if s.strIndex != nil {
		_, ok := s.strIndex[x]
		return ok
	}
	for _, y := range s.strs {
		if x == y {
			return true
		}
	}
	return false
}

// hasBytes is hasString for a byte slice, without converting it to a
// string on the heap.
func (s *valueSet) hasBytes(x []byte) bool {
	if s.strIndex != nil {
		_, ok := s.strIndex[string(x)]
		return ok
	}
	for _, y := range s.strs {
		if string(x) == y {
			return true
		}
	}
	return false
}
