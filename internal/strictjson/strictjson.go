// Package strictjson checks a JSON document against the Go type it is to be
// decoded into, before encoding/json decodes it, for what encoding/json lets
// through:
//
//   - a key that matches a field only case-insensitively ("Unit_ID" for
//     unit_id), or that matches no field: an unknown field;
//   - a key twice in one object (encoding/json keeps the last), at any depth,
//     free-form values included;
//   - nesting deeper than MaxDepth levels (encoding/json allows 10,000);
//   - a value of the wrong JSON kind, or a number out of its field's range,
//     named by its full path with indexes ("variants[1].weight", where
//     encoding/json says "variants.weight");
//   - text PostgreSQL cannot store or that encoding/json would silently
//     change: NUL (\u0000), invalid UTF-8 and lone UTF-16 surrogate escapes
//     (both replaced by U+FFFD in encoding/json), and in free-form values
//     (stored as jsonb) numbers PostgreSQL's numeric cannot hold;
//   - null for the whole document (encoding/json decodes it as {}).
//
// Every problem is a *flywheel.Error of code invalid_argument whose Field is
// the path of the value at fault ("" for the document as a whole), in the
// API's notation: "metrics.primary[0]", "targeting.country.$in". Syntax
// errors name the value being read when the syntax broke, so that
// {"traffic": NaN} names traffic.
//
// The checker is a recursive-descent parser bounded by MaxDepth. It is
// meant for the slow path: it allocates a string per object key, and the
// path of an error only when there is one. (The events' fast decoder does
// its own checks without allocating; see ingest.)
package strictjson

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/flywheel-oss/flywheel"
)

// MaxDepth is how deeply a document may nest objects and arrays: the
// outermost object is level 1.
const MaxDepth = 64

// Options adjust a check.
type Options struct {
	// Subject names the whole document in messages: "request body"
	// (default) or "event".
	Subject string
	// LenientText leaves the text inside free-form values (json.RawMessage,
	// any, types with their own UnmarshalJSON) unchecked for NUL, invalid
	// UTF-8 and lone surrogates; the caller normalises or refuses it.
	// Fields of type string are always checked.
	LenientText bool
}

// Decode checks data against v's type and then decodes it into v with
// encoding/json. v must be a non-nil pointer.
func Decode(data []byte, v any, opts Options) *flywheel.Error {
	if err := Check(data, reflect.TypeOf(v).Elem(), opts); err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		// Only a type's own UnmarshalJSON can still refuse the value.
		return TranslateError(err, opts.Subject)
	}
	return nil
}

// Check reports the first problem of data as the JSON encoding of a value of
// type t, or nil.
func Check(data []byte, t reflect.Type, opts Options) *flywheel.Error {
	if opts.Subject == "" {
		opts.Subject = "request body"
	}
	c := checker{b: data, opts: opts}
	c.i = skipSpace(data, 0)
	if c.i == len(data) {
		return flywheel.Invalid("", "%s is empty; a JSON object is required", opts.Subject)
	}
	if !c.value(infoOf(t), pathRoot, 0) {
		return c.err
	}
	if c.i = skipSpace(data, c.i); c.i != len(data) {
		return flywheel.Invalid("", "%s must hold exactly one JSON value (found more at byte %d)", opts.Subject, c.i)
	}
	return nil
}

// path is the location of a value, built only when an error needs it.
type path struct {
	parent *path
	key    string // object member, when index < 0
	index  int
}

var pathRoot = (*path)(nil)

func (p *path) String() string {
	if p == nil {
		return ""
	}
	var parts []*path
	for q := p; q != nil; q = q.parent {
		parts = append(parts, q)
	}
	var sb strings.Builder
	for i := len(parts) - 1; i >= 0; i-- {
		q := parts[i]
		if q.index >= 0 {
			fmt.Fprintf(&sb, "[%d]", q.index)
			continue
		}
		if sb.Len() > 0 {
			sb.WriteByte('.')
		}
		sb.WriteString(shortKey(q.key))
	}
	return sb.String()
}

// shortKey keeps error paths readable: a key is cut at 128 bytes (on a
// character boundary), its invalid UTF-8 shown as U+FFFD, its control
// characters as \u escapes, and the empty key as "" so that a path always
// names something.
func shortKey(k string) string {
	if k == "" {
		return `""`
	}
	if len(k) > 128 {
		n := 128
		for n > 0 && !utf8.RuneStart(k[n]) {
			n--
		}
		k = k[:n] + "…"
	}
	var sb strings.Builder
	for _, r := range k { // ranging replaces invalid UTF-8 with U+FFFD
		if r < 0x20 || r == 0x7f {
			fmt.Fprintf(&sb, "\\u%04x", r)
			continue
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

// kind is what a Go type accepts.
type kind uint8

const (
	kindFree   kind = iota // any JSON value, kept as text (json.RawMessage, a type with its own UnmarshalJSON)
	kindAny                // any JSON value, decoded (an interface: numbers become float64)
	kindStruct             // an object with exactly the fields' names
	kindMap                // an object with any keys, values of elem
	kindList               // an array of elem (slice or array)
	kindString
	kindBool
	kindFloat
	kindInt
	kindUint
)

// typeInfo is what the checker needs of a Go type.
type typeInfo struct {
	kind   kind
	bits   int // kindFloat, kindInt, kindUint
	elem   *typeInfo
	fields map[string]*typeInfo // kindStruct: by exact JSON name
	lower  map[string]string    // kindStruct: lower-case name -> name, for hints
}

var (
	infos           sync.Map // reflect.Type -> *typeInfo
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func infoOf(t reflect.Type) *typeInfo {
	if ti, ok := infos.Load(t); ok {
		return ti.(*typeInfo)
	}
	ti := build(t, map[reflect.Type]*typeInfo{})
	infos.Store(t, ti)
	return ti
}

// build describes t; seen breaks cycles of recursive types.
func build(t reflect.Type, seen map[reflect.Type]*typeInfo) *typeInfo {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if ti, ok := seen[t]; ok {
		return ti
	}
	ti := &typeInfo{}
	seen[t] = ti
	pt := reflect.PointerTo(t)
	if t.Implements(jsonUnmarshaler) || pt.Implements(jsonUnmarshaler) ||
		t.Implements(textUnmarshaler) || pt.Implements(textUnmarshaler) {
		return ti // free: the type decides
	}
	switch t.Kind() {
	case reflect.Interface:
		ti.kind = kindAny
	case reflect.Struct:
		ti.kind = kindStruct
		ti.fields, ti.lower = map[string]*typeInfo{}, map[string]string{}
		addFields(ti, t, seen)
	case reflect.Map:
		if t.Key().Kind() == reflect.String {
			ti.kind, ti.elem = kindMap, build(t.Elem(), seen)
		}
	case reflect.Slice, reflect.Array:
		if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 {
			ti.kind = kindString // []byte is base64 text
			break
		}
		ti.kind, ti.elem = kindList, build(t.Elem(), seen)
	case reflect.String:
		ti.kind = kindString
	case reflect.Bool:
		ti.kind = kindBool
	case reflect.Float32, reflect.Float64:
		ti.kind, ti.bits = kindFloat, t.Bits()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		ti.kind, ti.bits = kindInt, t.Bits()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		ti.kind, ti.bits = kindUint, t.Bits()
	}
	return ti
}

// addFields adds t's JSON fields to ti as encoding/json sees them: the
// tag's name or the Go name, "-" left out, untagged embedded structs
// flattened (their fields lose to the outer ones).
func addFields(ti *typeInfo, t reflect.Type, seen map[reflect.Type]*typeInfo) {
	var embedded []reflect.Type
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				embedded = append(embedded, ft)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		ti.fields[name] = build(f.Type, seen)
		ti.lower[strings.ToLower(name)] = name
	}
	for _, et := range embedded {
		inner := &typeInfo{fields: map[string]*typeInfo{}, lower: map[string]string{}}
		addFields(inner, et, seen)
		for name, fi := range inner.fields {
			if _, ok := ti.fields[name]; !ok {
				ti.fields[name] = fi
				ti.lower[strings.ToLower(name)] = name
			}
		}
	}
}

// checker is one check in progress.
type checker struct {
	b    []byte
	i    int
	opts Options
	err  *flywheel.Error
	// key is a scratch buffer for keys written with escapes.
	key []byte
}

// fail records the first problem, a message about the value at p (named
// first), and returns false.
func (c *checker) fail(p *path, format string, args ...any) bool {
	if c.err == nil {
		field := p.String()
		who := field
		if who == "" {
			who = c.opts.Subject
		}
		c.err = flywheel.Invalid(field, "%s %s", who, fmt.Sprintf(format, args...))
	}
	return false
}

// failPlain records the first problem with a message of its own.
func (c *checker) failPlain(p *path, format string, args ...any) bool {
	if c.err == nil {
		c.err = flywheel.Invalid(p.String(), format, args...)
	}
	return false
}

// syntax records a syntax error at the current byte.
func (c *checker) syntax(p *path, what string) bool {
	if c.i >= len(c.b) {
		return c.fail(p, "is not valid JSON: unexpected end of input (%s)", what)
	}
	ch := c.b[c.i]
	hint := ""
	switch {
	case bytes.HasPrefix(c.b[c.i:], []byte("NaN")), bytes.HasPrefix(c.b[c.i:], []byte("Infinity")),
		bytes.HasPrefix(c.b[c.i:], []byte("-Infinity")), bytes.HasPrefix(c.b[c.i:], []byte("+Infinity")):
		hint = ": NaN and Infinity are not JSON numbers"
	}
	return c.fail(p, "is not valid JSON: unexpected %s at byte %d (%s)%s", quoteByte(ch), c.i, what, hint)
}

func quoteByte(ch byte) string {
	if ch < utf8.RuneSelf && strconv.IsPrint(rune(ch)) {
		return strconv.QuoteRune(rune(ch))
	}
	return fmt.Sprintf("byte 0x%02x", ch)
}

// jsonKind names the JSON kind of the value starting at b[i].
func jsonKind(b []byte, i int) string {
	switch b[i] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

func (ti *typeInfo) want() string {
	switch ti.kind {
	case kindStruct, kindMap:
		return "a JSON object"
	case kindList:
		return "an array"
	case kindString:
		return "a string"
	case kindBool:
		return "true or false"
	case kindInt, kindUint:
		return "a whole number"
	}
	return "a number"
}

// value checks the value at c.i against ti; depth is the number of
// objects and arrays it is in.
func (c *checker) value(ti *typeInfo, p *path, depth int) bool {
	b := c.b
	if c.i >= len(b) {
		return c.syntax(p, "a value was expected")
	}
	ch := b[c.i]
	if ch == 'n' {
		if !bytes.HasPrefix(b[c.i:], []byte("null")) {
			return c.syntax(p, "a value was expected")
		}
		if p == pathRoot && (ti.kind == kindStruct || ti.kind == kindMap) {
			return c.fail(p, "must be a JSON object, not null")
		}
		c.i += 4 // null fits every other place of every type
		return true
	}
	// The kind of the value must fit the type.
	ok := true
	switch ti.kind {
	case kindStruct, kindMap:
		ok = ch == '{'
	case kindList:
		ok = ch == '['
	case kindString:
		ok = ch == '"'
	case kindBool:
		ok = ch == 't' || ch == 'f'
	case kindFloat, kindInt, kindUint:
		ok = ch == '-' || ch >= '0' && ch <= '9'
	}
	if !ok {
		if !validStart(ch) {
			return c.syntax(p, "a value was expected")
		}
		return c.fail(p, "must be %s, not %s", ti.want(), jsonKind(b, c.i))
	}
	switch ch {
	case '{':
		return c.object(ti, p, depth+1)
	case '[':
		return c.array(ti, p, depth+1)
	case '"':
		_, problem, ok := c.str(p, false)
		if ok && problem != "" && (ti.kind == kindString || !c.opts.LenientText) {
			return c.fail(p, "%s", problem)
		}
		return ok
	case 't':
		return c.literal(p, "true")
	case 'f':
		return c.literal(p, "false")
	}
	return c.number(ti, p)
}

func validStart(ch byte) bool {
	return ch == '{' || ch == '[' || ch == '"' || ch == 't' || ch == 'f' || ch == 'n' || ch == '-' || ch >= '0' && ch <= '9'
}

func (c *checker) literal(p *path, lit string) bool {
	if !bytes.HasPrefix(c.b[c.i:], []byte(lit)) {
		return c.syntax(p, "a value was expected")
	}
	c.i += len(lit)
	return true
}

// number checks a number's syntax and that it fits ti.
func (c *checker) number(ti *typeInfo, p *path) bool {
	b, start := c.b, c.i
	digits := func() bool {
		j := c.i
		for c.i < len(b) && b[c.i] >= '0' && b[c.i] <= '9' {
			c.i++
		}
		return c.i > j
	}
	if b[c.i] == '-' {
		c.i++
	}
	intStart := c.i
	switch {
	case c.i < len(b) && b[c.i] == '0':
		c.i++
	case !digits():
		return c.syntax(p, "digits were expected")
	}
	intDigits, fracDigits, exp := c.i-intStart, 0, 0
	integer := true
	if c.i < len(b) && b[c.i] == '.' {
		c.i++
		integer = false
		fracStart := c.i
		if !digits() {
			return c.syntax(p, "digits were expected after the decimal point")
		}
		fracDigits = c.i - fracStart
	}
	if c.i < len(b) && (b[c.i] == 'e' || b[c.i] == 'E') {
		c.i++
		integer = false
		sign := 1
		if c.i < len(b) && (b[c.i] == '+' || b[c.i] == '-') {
			if b[c.i] == '-' {
				sign = -1
			}
			c.i++
		}
		expStart := c.i
		if !digits() {
			return c.syntax(p, "digits were expected in the exponent")
		}
		for _, d := range b[expStart:c.i] {
			if exp = exp*10 + int(d-'0'); exp > 1_000_000 {
				break // far beyond any limit below
			}
		}
		exp *= sign
	}
	switch ti.kind {
	case kindAny:
		// Decoded into an interface, a number is a float64.
		if _, err := strconv.ParseFloat(string(b[start:c.i]), 64); err != nil {
			return c.fail(p, "is out of range: %.40s is not a 64-bit floating-point number", b[start:c.i])
		}
		fallthrough
	case kindFree:
		// Free-form JSON is stored as jsonb, whose numeric refuses an
		// exponent beyond ±1000 (PostgreSQL 13 and older), more than 131072
		// digits before the decimal point or 16383 after it. Such a number
		// would make the database refuse the whole request.
		if !c.opts.LenientText && (exp > 1000 || exp < -1000 || intDigits+exp > 131072 || fracDigits-exp > 16383) {
			return c.fail(p, "holds a number PostgreSQL cannot store (an exponent beyond ±1000, or too many digits)")
		}
		return true
	case kindFloat:
		text := string(b[start:c.i])
		if _, err := strconv.ParseFloat(text, ti.bits); err != nil {
			return c.fail(p, "is out of range: %.40s is not a %d-bit floating-point number", text, ti.bits)
		}
	case kindInt:
		text := string(b[start:c.i])
		if _, err := strconv.ParseInt(text, 10, ti.bits); err != nil || !integer {
			return c.fail(p, "must be a whole number that fits in %d bits, not %.40s", ti.bits, text)
		}
	case kindUint:
		text := string(b[start:c.i])
		if _, err := strconv.ParseUint(text, 10, ti.bits); err != nil || !integer {
			return c.fail(p, "must be a whole number from 0 that fits in %d bits, not %.40s", ti.bits, text)
		}
	}
	return true
}

// str checks the syntax of the string at c.i and returns its value, as
// encoding/json decodes it, when wantValue is set (object keys), and the
// first problem of its text ("" when none): NUL, invalid UTF-8, a lone
// surrogate. ok is false after a syntax error.
func (c *checker) str(p *path, wantValue bool) (value, problem string, ok bool) {
	b := c.b
	c.i++ // the opening quote
	start, plain := c.i, true
	for c.i < len(b) {
		ch := b[c.i]
		switch {
		case ch == '"':
			raw := b[start:c.i]
			c.i++
			if plain && utf8.Valid(raw) {
				if wantValue {
					value = string(raw)
				}
				return value, "", true
			}
			value, problem = c.unescape(raw, wantValue)
			return value, problem, true
		case ch == '\\':
			plain = false
			c.i++
			if c.i >= len(b) {
				return "", "", c.syntax(p, "an escape was expected")
			}
			switch b[c.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				c.i++
			case 'u':
				if len(b)-c.i < 5 || !isHex4(b[c.i+1:c.i+5]) {
					return "", "", c.syntax(p, `four hexadecimal digits were expected after \u`)
				}
				c.i += 5
			default:
				return "", "", c.syntax(p, "a valid escape was expected")
			}
		case ch < 0x20:
			return "", "", c.syntax(p, "control characters must be escaped in a string")
		default:
			c.i++
		}
	}
	return "", "", c.syntax(p, "a closing quote was expected")
}

func isHex4(h []byte) bool {
	for _, x := range h {
		if !('0' <= x && x <= '9' || 'a' <= x && x <= 'f' || 'A' <= x && x <= 'F') {
			return false
		}
	}
	return true
}

// unescape decodes raw (its syntax already checked) as encoding/json does:
// invalid UTF-8 and lone surrogates become U+FFFD. It returns the value
// when wantValue is set, and the first problem of the text.
func (c *checker) unescape(raw []byte, wantValue bool) (value, problem string) {
	out := c.key[:0]
	note := func(p string) {
		if problem == "" {
			problem = p
		}
	}
	for i := 0; i < len(raw); {
		ch := raw[i]
		if ch != '\\' {
			if ch < utf8.RuneSelf {
				out = append(out, ch)
				i++
				continue
			}
			r, size := utf8.DecodeRune(raw[i:])
			if r == utf8.RuneError && size == 1 {
				note("must be valid UTF-8")
			}
			out = utf8.AppendRune(out, r)
			i += size
			continue
		}
		i++
		switch raw[i] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := hex4(raw[i+1 : i+5])
			i += 4
			switch {
			case r == 0:
				note("must not contain NUL characters (\\u0000)")
			case utf16.IsSurrogate(r):
				lo := rune(-1)
				if i+6 < len(raw) && raw[i+1] == '\\' && raw[i+2] == 'u' {
					lo = hex4(raw[i+3 : i+7])
				}
				if dec := utf16.DecodeRune(r, lo); dec != utf8.RuneError {
					r = dec
					i += 6
				} else {
					note(fmt.Sprintf("must be valid Unicode: \\u%04x is half of a UTF-16 surrogate pair", r))
					r = utf8.RuneError
				}
			}
			out = utf8.AppendRune(out, r)
		default: // " \ /
			out = append(out, raw[i])
		}
		i++
	}
	c.key = out
	if wantValue {
		value = string(out)
	}
	return value, problem
}

func hex4(h []byte) rune {
	var r rune
	for _, x := range h {
		switch {
		case x >= '0' && x <= '9':
			x -= '0'
		case x >= 'a' && x <= 'f':
			x = x - 'a' + 10
		default:
			x = x - 'A' + 10
		}
		r = r<<4 | rune(x)
	}
	return r
}

// object checks an object: its keys are the field names of a struct
// exactly, or any keys of a map or free value; none twice.
func (c *checker) object(ti *typeInfo, p *path, depth int) bool {
	if depth > MaxDepth {
		return c.fail(p, "nests deeper than %d levels of objects and arrays", MaxDepth)
	}
	b := c.b
	c.i = skipSpace(b, c.i+1)
	if c.i < len(b) && b[c.i] == '}' {
		c.i++
		return true
	}
	strictKeys := ti.kind == kindStruct || ti.kind == kindMap || !c.opts.LenientText
	var seen keySet
	for {
		if c.i >= len(b) || b[c.i] != '"' {
			return c.syntax(p, "an object key in quotes was expected")
		}
		key, problem, ok := c.str(p, true)
		if !ok {
			return false
		}
		kp := &path{parent: p, key: key, index: -1}
		if problem != "" && strictKeys {
			return c.failPlain(kp, "the key %q %s", shortKey(key), problem)
		}
		if seen.has(key) {
			return c.failPlain(kp, "duplicate key %q: a key may appear only once in an object", shortKey(key))
		}
		seen.add(key)
		elem := ti.elem
		switch ti.kind {
		case kindStruct:
			fi, known := ti.fields[key]
			if !known {
				if name, ok := ti.lower[strings.ToLower(key)]; ok {
					return c.failPlain(kp, "unknown field %q: field names are case-sensitive (did you mean %q?)", shortKey(key), name)
				}
				return c.failPlain(kp, "unknown field %q", shortKey(key))
			}
			elem = fi
		case kindMap:
		default:
			elem = ti // free: free members
		}
		if c.i = skipSpace(b, c.i); c.i >= len(b) || b[c.i] != ':' {
			return c.syntax(kp, "a colon after the key was expected")
		}
		c.i = skipSpace(b, c.i+1)
		if !c.value(elem, kp, depth) {
			return false
		}
		if c.i = skipSpace(b, c.i); c.i < len(b) && b[c.i] == '}' {
			c.i++
			return true
		}
		if c.i >= len(b) || b[c.i] != ',' {
			return c.syntax(p, "a comma or } was expected")
		}
		c.i = skipSpace(b, c.i+1)
	}
}

// array checks an array and its elements.
func (c *checker) array(ti *typeInfo, p *path, depth int) bool {
	if depth > MaxDepth {
		return c.fail(p, "nests deeper than %d levels of objects and arrays", MaxDepth)
	}
	b := c.b
	elem := ti.elem
	if ti.kind != kindList {
		elem = ti // free: free elements, of the same kind of freedom
	}
	c.i = skipSpace(b, c.i+1)
	if c.i < len(b) && b[c.i] == ']' {
		c.i++
		return true
	}
	for n := 0; ; n++ {
		ep := &path{parent: p, index: n}
		if !c.value(elem, ep, depth) {
			return false
		}
		if c.i = skipSpace(b, c.i); c.i < len(b) && b[c.i] == ']' {
			c.i++
			return true
		}
		if c.i >= len(b) || b[c.i] != ',' {
			return c.syntax(p, "a comma or ] was expected")
		}
		c.i = skipSpace(b, c.i+1)
	}
}

// keySet holds the keys of one object: a few in an array on the stack, more
// in a map.
type keySet struct {
	few  [8]string
	n    int
	many map[string]struct{}
}

func (s *keySet) has(k string) bool {
	if s.many != nil {
		_, ok := s.many[k]
		return ok
	}
	for _, x := range s.few[:s.n] {
		if x == k {
			return true
		}
	}
	return false
}

func (s *keySet) add(k string) {
	switch {
	case s.many != nil:
		s.many[k] = struct{}{}
	case s.n < len(s.few):
		s.few[s.n] = k
		s.n++
	default:
		s.many = make(map[string]struct{}, 2*len(s.few))
		for _, x := range s.few {
			s.many[x] = struct{}{}
		}
		s.many[k] = struct{}{}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// TranslateError turns an error of encoding/json into an invalid_argument
// *flywheel.Error naming the field, for what Check leaves to encoding/json:
// the values of types with their own UnmarshalJSON.
func TranslateError(err error, subject string) *flywheel.Error {
	if subject == "" {
		subject = "request body"
	}
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &syn):
		return flywheel.Invalid("", "%s is not valid JSON at byte %d: %v", subject, syn.Offset, syn)
	case errors.As(err, &typ):
		who := typ.Field
		if who == "" {
			who = subject
		}
		if t := typ.Type; t != nil && t.Name() == "LayerRange" {
			return flywheel.Invalid(typ.Field, "%s must be an array of two integers [from, to]", who)
		}
		if t := typ.Type; t != nil && (t.Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(jsonUnmarshaler)) {
			return flywheel.Invalid(typ.Field, "%s is not valid: %s", who, typ.Value)
		}
		return flywheel.Invalid(typ.Field, "%s must be %s, not %s", who, goKind(typ.Type), typ.Value)
	}
	return flywheel.Invalid("", "%s is not valid: %v", subject, err)
}

// goKind says in words what JSON a Go type takes.
func goKind(t reflect.Type) string {
	if t == nil {
		return "a JSON value of the right type"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "a JSON object"
	}
	return "a JSON value of type " + t.String()
}

// PathAt returns the path, in Check's notation, of the value being read at
// the first syntax error of data (or at its end), as far as it can be
// told: the key or index whose value broke, else the object or array that
// holds it. It reads data with encoding/json's iterative scanner, so any
// depth is safe. Use it to name the field of a syntax error that
// encoding/json reported.
func PathAt(data []byte) string {
	type frame struct {
		object  bool
		key     string
		haveKey bool // object: key read, its value not yet
		index   int  // array: elements done
	}
	var stack []frame
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		if n := len(stack); n > 0 && stack[n-1].object && !stack[n-1].haveKey {
			if k, ok := tok.(string); ok {
				stack[n-1].key, stack[n-1].haveKey = k, true
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{object: true})
			continue
		case json.Delim('['):
			stack = append(stack, frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		// A value ended (a scalar, or the object or array just closed).
		if n := len(stack); n > 0 {
			if stack[n-1].object {
				stack[n-1].haveKey = false
			} else {
				stack[n-1].index++
			}
		}
	}
	var p *path
	for _, f := range stack {
		switch {
		case f.object && f.haveKey:
			p = &path{parent: p, key: f.key, index: -1}
		case !f.object:
			p = &path{parent: p, index: f.index}
		}
	}
	return p.String()
}
