package api

import (
	"strconv"
	"unicode/utf8"
)

// decodeFastRow decodes the usual NDJSON list line, {"unit_id": "...",
// "attributes": {...}} whose attribute values are plain strings, numbers
// without exponent, booleans or null, with no escapes anywhere, into row,
// and reports whether it did. It gives up (false) on anything else, which
// the slow path (strictjson, then encoding/json) then decodes or names the
// error of; what it accepts, it decodes exactly as the slow path would
// (FuzzNDJSONFastPath).
func decodeFastRow(b []byte, row *listRow) bool {
	p := fastParser{b: b}
	if !p.byte('{') {
		return false
	}
	var id string
	var haveID, haveAttrs bool
	var attrs map[string]any
	for first := true; ; first = false {
		p.space()
		if p.peek() == '}' && first {
			return false // no unit_id: the slow path names it
		}
		key, ok := p.str()
		if !ok || !p.byte(':') {
			return false
		}
		p.space()
		switch {
		case key == "unit_id" && !haveID:
			if id, ok = p.str(); !ok {
				return false
			}
			haveID = true
		case key == "attributes" && !haveAttrs:
			if attrs, ok = p.object(); !ok {
				return false
			}
			haveAttrs = true
		default:
			return false
		}
		p.space()
		if p.byte(',') {
			continue
		}
		if !p.byte('}') {
			return false
		}
		p.space()
		if p.i != len(p.b) || !haveID {
			return false
		}
		row.UnitID, row.Attrs = id, attrs
		return true
	}
}

type fastParser struct {
	b []byte
	i int
}

func (p *fastParser) space() {
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\t' || p.b[p.i] == '\r' || p.b[p.i] == '\n') {
		p.i++
	}
}

func (p *fastParser) peek() byte {
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

// byte skips space and consumes c if it is next.
func (p *fastParser) byte(c byte) bool {
	p.space()
	if p.peek() == c {
		p.i++
		return true
	}
	return false
}

// str reads a string without escapes or control characters, in valid
// UTF-8 without NUL.
func (p *fastParser) str() (string, bool) {
	if p.peek() != '"' {
		return "", false
	}
	start := p.i + 1
	for j := start; j < len(p.b); j++ {
		switch c := p.b[j]; {
		case c == '"':
			s := p.b[start:j]
			if !utf8.Valid(s) {
				return "", false
			}
			p.i = j + 1
			return string(s), true
		case c == '\\' || c < 0x20:
			return "", false
		}
	}
	return "", false
}

// object reads a flat object of plain values, with no key twice; null
// gives a nil map.
func (p *fastParser) object() (map[string]any, bool) {
	if p.lit("null") {
		return nil, true
	}
	if !p.byte('{') {
		return nil, false
	}
	m := map[string]any{}
	p.space()
	if p.byte('}') {
		return m, true
	}
	for {
		p.space()
		k, ok := p.str()
		if !ok || !p.byte(':') {
			return nil, false
		}
		if _, dup := m[k]; dup {
			return nil, false
		}
		p.space()
		var v any
		switch c := p.peek(); {
		case c == '"':
			if v, ok = p.str(); !ok {
				return nil, false
			}
		case c == 't' && p.lit("true"):
			v = true
		case c == 'f' && p.lit("false"):
			v = false
		case c == 'n' && p.lit("null"):
			v = nil
		case c == '-' || (c >= '0' && c <= '9'):
			if v, ok = p.number(); !ok {
				return nil, false
			}
		default:
			return nil, false
		}
		m[k] = v
		if p.byte(',') {
			continue
		}
		if p.byte('}') {
			return m, true
		}
		return nil, false
	}
}

func (p *fastParser) lit(s string) bool {
	if len(p.b)-p.i >= len(s) && string(p.b[p.i:p.i+len(s)]) == s {
		p.i += len(s)
		return true
	}
	return false
}

// number reads -?(0|[1-9][0-9]*)(.[0-9]+)? of at most 20 characters
// (exponents, and longer numbers, are the slow path's).
func (p *fastParser) number() (float64, bool) {
	start, j := p.i, p.i
	digits := func() int {
		n := 0
		for j < len(p.b) && p.b[j] >= '0' && p.b[j] <= '9' {
			j, n = j+1, n+1
		}
		return n
	}
	if p.b[j] == '-' {
		j++
	}
	if j < len(p.b) && p.b[j] == '0' {
		j++
	} else if digits() == 0 {
		return 0, false
	}
	if j < len(p.b) && p.b[j] == '.' {
		j++
		if digits() == 0 {
			return 0, false
		}
	}
	if j-start > 20 || (j < len(p.b) && (p.b[j] == 'e' || p.b[j] == 'E' || (p.b[j] >= '0' && p.b[j] <= '9'))) {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(p.b[start:j]), 64)
	if err != nil {
		return 0, false
	}
	p.i = j
	return f, true
}
