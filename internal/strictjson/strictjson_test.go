package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/flywheel-oss/flywheel"
)

// sample has a field of every kind the API's bodies use.
type sample struct {
	Key      string            `json:"key"`
	Weight   float64           `json:"weight"`
	Share    *float64          `json:"share"`
	Count    int               `json:"count"`
	Small    int8              `json:"small"`
	Unsigned uint16            `json:"unsigned"`
	Flag     *bool             `json:"flag"`
	Items    []item            `json:"items"`
	Labels   map[string]string `json:"labels"`
	Free     any               `json:"free"`
	Raw      json.RawMessage   `json:"raw"`
	Range    *pair             `json:"range"`
	Pair     [2]int            `json:"pair"`
	Ignored  string            `json:"-"`
	NoTag    string
	inner
}

type inner struct {
	Embedded string `json:"embedded"`
}

type item struct {
	Name string `json:"name"`
	Self *item  `json:"self"` // a recursive type
}

// pair decodes itself, as assign.LayerRange does.
type pair struct{ A, B int }

func (p *pair) UnmarshalJSON(b []byte) error {
	var a []int
	if err := json.Unmarshal(b, &a); err != nil || len(a) != 2 {
		return &json.UnmarshalTypeError{Value: "not a pair", Type: reflect.TypeOf(p)}
	}
	p.A, p.B = a[0], a[1]
	return nil
}

func (p pair) MarshalJSON() ([]byte, error) { return json.Marshal([]int{p.A, p.B}) }

var sampleType = reflect.TypeFor[sample]()

func TestCheckAccepts(t *testing.T) {
	for _, doc := range []string{
		`{}`, ` { } `, "\t{\"key\":\"x\"}\r\n",
		`{"key":"k","weight":0.5,"share":null,"count":-3,"small":127,"unsigned":65535,"flag":true}`,
		`{"items":[{"name":"a","self":{"name":"b","self":null}}],"labels":{"A":"x","a":"y"}}`,
		`{"free":{"x":[1,{"y":null}],"X":"case differs: both kept"},"raw":[1,"two",{"3":false}]}`,
		`{"range":[1,2],"pair":[3,4],"NoTag":"n","embedded":"e"}`,
		`{"key":"\u00e9\ud83d\ude00 \"quoted\" \\ \/ \b\f\n\r\t","weight":1e-300,"count":100}`,
		`{"key":null,"weight":null,"items":null,"labels":null,"free":null,"raw":null}`,
		`{"free":` + strings.Repeat("[", MaxDepth-1) + strings.Repeat("]", MaxDepth-1) + `}`,
		`{"weight":-0,"count":0,"small":-128}`,
		`{"raw":[1e1000,-1e-1000,0.` + strings.Repeat("1", 16383) + `,1` + strings.Repeat("0", 131071) + `]}`,
		`{"free":[1e308,-1e-400,4e-324]}`,
	} {
		if err := Check([]byte(doc), sampleType, Options{}); err != nil {
			t.Errorf("Check(%.80s) = %v, want nil", doc, err)
		}
		var v sample
		if err := Decode([]byte(doc), &v, Options{}); err != nil {
			t.Errorf("Decode(%.80s) = %v, want nil", doc, err)
		}
	}
}

func TestCheckRejects(t *testing.T) {
	deep := `{"free":` + strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth) + `}`
	tests := []struct {
		doc, field, msg string
	}{
		// Names: exact, known, once.
		{`{"Key":"x"}`, "Key", `unknown field "Key": field names are case-sensitive (did you mean "key"?)`},
		{`{"KEY":"x"}`, "KEY", `did you mean "key"?`},
		{`{"colour":"x"}`, "colour", `unknown field "colour"`},
		{`{"Ignored":"x"}`, "Ignored", "unknown field"},
		{`{"notag":"x"}`, "notag", `did you mean "NoTag"?`},
		{`{"items":[{"name":"a"},{"Name":"b"}]}`, "items[1].Name", `did you mean "name"?`},
		{`{"items":[{"self":{"self":{"nmae":1}}}]}`, "items[0].self.self.nmae", "unknown field"},
		{`{"key":"a","key":"b"}`, "key", `duplicate key "key"`},
		{`{"key":"a","k\u0065y":"b"}`, "key", `duplicate key "key"`},
		{`{"labels":{"a":"x","b":"y","a":"z"}}`, "labels.a", "duplicate key"},
		{`{"free":{"x":{"y":1,"y":2}}}`, "free.x.y", "duplicate key"},
		{`{"raw":[{"x":1,"x":1}]}`, "raw[0].x", "duplicate key"},
		{`{"labels":{` + manyKeys(20, "k3") + `}}`, "labels.k3", "duplicate key"},
		// Kinds and ranges.
		{`[]`, "", "request body must be a JSON object, not an array"},
		{`"x"`, "", "must be a JSON object, not a string"},
		{`{"key":1}`, "key", "key must be a string, not a number"},
		{`{"weight":"0.5"}`, "weight", "weight must be a number, not a string"},
		{`{"weight":true}`, "weight", "not a boolean"},
		{`{"weight":1e400}`, "weight", "out of range"},
		{`{"count":1.5}`, "count", "whole number"},
		{`{"count":1e400}`, "count", "whole number"},
		{`{"small":128}`, "small", "fits in 8 bits"},
		{`{"unsigned":-1}`, "unsigned", "whole number from 0"},
		{`{"flag":"yes"}`, "flag", "flag must be true or false, not a string"},
		{`{"items":{}}`, "items", "items must be an array, not an object"},
		{`{"items":[1]}`, "items[0]", "must be a JSON object, not a number"},
		{`{"labels":{"a":1}}`, "labels.a", "must be a string"},
		{`{"labels":[]}`, "labels", "must be a JSON object"},
		{`{"pair":"x"}`, "pair", "must be an array"},
		{`{"count":1e2}`, "count", "whole number"},
		// Text.
		{`{"key":"a\u0000b"}`, "key", "NUL"},
		{`{"key":"\ud800"}`, "key", "surrogate"},
		{`{"key":"\udc00\ud800"}`, "key", "surrogate"},
		{`{"key":"\ud800\u0041"}`, "key", "surrogate"},
		{"{\"key\":\"\xff\"}", "key", "UTF-8"},
		{"{\"key\":\"a\\n\xc3\"}", "key", "UTF-8"},
		{"{\"free\":{\"a\":\"\xed\xa0\x80\"}}", "free.a", "UTF-8"},
		{"{\"free\":{\"\xff\":1}}", "free.\ufffd", "the key \"\ufffd\" must be valid UTF-8"},
		{`{"raw":"\u0000"}`, "raw", "NUL"},
		{`{"labels":{"\u0000":"x"}}`, `labels.\u0000`, `the key "\\u0000" must not contain NUL`},
		{`{"raw":{"a":[1e1001]}}`, "raw.a[0]", "PostgreSQL cannot store"},
		{`{"raw":-1e-1001}`, "raw", "PostgreSQL cannot store"},
		{`{"raw":0.` + strings.Repeat("1", 16384) + `}`, "raw", "PostgreSQL cannot store"},
		{`{"raw":1` + strings.Repeat("0", 131072) + `}`, "raw", "PostgreSQL cannot store"},
		{`{"raw":1e99999999999999999999}`, "raw", "PostgreSQL cannot store"},
		// Decoded into an interface, a number must be a float64.
		{`{"free":{"a":[1e309]}}`, "free.a[0]", "out of range"},
		{`{"free":-1e400}`, "free", "out of range"},
		{`null`, "", "request body must be a JSON object, not null"},
		// Depth.
		{deep, "free" + strings.Repeat("[0]", MaxDepth-1), "deeper than 64 levels"},
		// Syntax, naming the value being read.
		{``, "", "request body is empty"},
		{"  \n", "", "request body is empty"},
		{`{"weight":NaN}`, "weight", "NaN and Infinity are not JSON numbers"},
		{`{"weight":Infinity}`, "weight", "NaN and Infinity"},
		{`{"weight":-Infinity}`, "weight", "digits were expected"},
		{`{"weight":+1}`, "weight", "not valid JSON"},
		{`{"weight":01}`, "", "a comma or } was expected"},
		{`{"weight":1.}`, "weight", "after the decimal point"},
		{`{"weight":1e}`, "weight", "exponent"},
		{`{"key":"x`, "key", "closing quote"},
		{"{\"key\":\"a\tb\"}", "key", "control characters"},
		{`{"key":"\x"}`, "key", "valid escape"},
		{`{"key":"\u12"}`, "key", "hexadecimal"},
		{`{"key" "x"}`, "key", "colon"},
		{`{"key":"x",}`, "", "object key in quotes"},
		{`{key:"x"}`, "", "object key in quotes"},
		{`{"items":[{"name":"a"},]}`, "items[1]", "value was expected"},
		{`{"items":[{"name":"a"} {"name":"b"}]}`, "items", "a comma or ]"},
		{`{"flag":tru}`, "flag", "not valid JSON"},
		{`{"free":nul}`, "free", "not valid JSON"},
		{`{"key":"x"}}`, "", "exactly one JSON value"},
		{`{"key":"x"} {}`, "", "exactly one JSON value"},
		{`{"key":"x"`, "", "unexpected end of input"},
		{"{\"key\":\"x\"}\x00", "", "exactly one JSON value"},
	}
	for _, tt := range tests {
		err := Check([]byte(tt.doc), sampleType, Options{})
		if err == nil {
			t.Errorf("Check(%.80q) accepted it, want an error on %q", tt.doc, tt.field)
			continue
		}
		if err.Code != flywheel.CodeInvalidArgument || err.Field != tt.field || !strings.Contains(err.Message, tt.msg) {
			t.Errorf("Check(%.80q) = {%s %q %q}, want invalid_argument on %q containing %q", tt.doc, err.Code, err.Field, err.Message, tt.field, tt.msg)
		}
		var v sample
		if derr := Decode([]byte(tt.doc), &v, Options{}); derr == nil || derr.Field != err.Field {
			t.Errorf("Decode(%.80q) = %v, want Check's error %v", tt.doc, derr, err)
		}
	}
}

func manyKeys(n int, dup string) string {
	var keys []string
	for i := range n {
		keys = append(keys, `"k`+string(rune('a'+i))+`":"v"`)
	}
	return strings.Join(keys, ",") + `,"` + dup + `":"v","` + dup + `":"w"`
}

// TestLenientText: free-form values may hold text that the caller
// normalises; typed strings never.
func TestLenientText(t *testing.T) {
	lenient := Options{LenientText: true, Subject: "event"}
	for _, doc := range []string{
		`{"free":{"a":"\u0000"}}`, `{"raw":{"a":"\ud800"}}`, "{\"raw\":{\"\xff\":\"\xfe\"}}", `{"raw":{"a":1e9999}}`,
	} {
		if err := Check([]byte(doc), sampleType, lenient); err != nil {
			t.Errorf("lenient Check(%q) = %v, want nil", doc, err)
		}
	}
	for _, tt := range []struct{ doc, field string }{
		{`{"key":"\u0000"}`, "key"},
		{`{"labels":{"a":"\ud800"}}`, "labels.a"},
		{"{\"labels\":{\"\xff\":\"x\"}}", "labels.\ufffd"},
		// Keys that encoding/json would decode to the same string collide.
		{"{\"raw\":{\"\xff\":1,\"\xfe\":2}}", "raw.\ufffd"},
		{`{"raw":{"\ud800":1,"\udbff":2}}`, "raw.\ufffd"},
	} {
		if err := Check([]byte(tt.doc), sampleType, lenient); err == nil || err.Field != tt.field {
			t.Errorf("lenient Check(%q) = %v, want an error on %q", tt.doc, err, tt.field)
		}
	}
	if err := Check([]byte(`7`), sampleType, lenient); err == nil || err.Message != "event must be a JSON object, not a number" {
		t.Errorf("Check with subject event = %v", err)
	}
}

// TestTranslateError: what only a type's own UnmarshalJSON refuses keeps
// its field.
func TestTranslateError(t *testing.T) {
	var v sample
	err := Decode([]byte(`{"range":[1,2,3]}`), &v, Options{})
	if err == nil || err.Field != "range" || err.Message != "range is not valid: not a pair" {
		t.Fatalf("Decode = %v, want an error on range", err)
	}
}

// FuzzCheck checks the checker against encoding/json and against an
// independent walk of the decoded document.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{
		`{"key":"k","weight":0.5,"share":0.25,"count":3,"small":-1,"unsigned":9,"flag":false,"items":[{"name":"a","self":{"name":"b"}}],"labels":{"x":"y"},"free":{"a":[1,{"b":null}]},"raw":{"c":"d"},"range":[1,2],"pair":[3,4],"NoTag":"n","embedded":"e"}`,
		`{"Key":"x"}`, `{"key":"a","key":"b"}`, `{"free":{"a":1,"a":2}}`, `{"weight":NaN}`, `{"count":1.5}`,
		`{"key":"\ud800"}`, `{"key":"\u0000"}`, "{\"key\":\"\xff\"}", `[]`, ``, `{"items":[{}],"labels":{}}`,
		`{"free":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, lenient bool) {
		opts := Options{LenientText: lenient}
		var v sample
		err := Decode(data, &v, opts)
		if err != nil {
			if err.Code != flywheel.CodeInvalidArgument || err.Message == "" {
				t.Fatalf("Decode(%q) = %+v: not an invalid_argument with a message", data, err)
			}
			// A problem inside a well-formed object is named by its field.
			if json.Valid(data) && bytes.TrimLeft(data, " \t\r\n")[0] == '{' && err.Field == "" {
				t.Fatalf("Decode(%q) = %v: the problem is inside the object but names no field", data, err)
			}
			if !lenient && Decode(data, new(sample), Options{LenientText: true}) == nil && !strings.Contains(strings.ToLower(err.Message), "utf") &&
				!strings.Contains(err.Message, "NUL") && !strings.Contains(err.Message, "surrogate") && !strings.Contains(err.Message, "PostgreSQL cannot store") {
				t.Fatalf("Decode(%q) = %v, accepted when lenient: only text and numbers in free-form values may make the difference", data, err)
			}
			return
		}
		// Accepted: encoding/json accepts it too, and it holds no unknown or
		// wrongly-cased key, no key twice, nothing too deep.
		var again sample
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if jerr := dec.Decode(&again); jerr != nil {
			t.Fatalf("Check accepted %q, encoding/json refuses it: %v", data, jerr)
		}
		if _, terr := dec.Token(); terr != io.EOF {
			t.Fatalf("Check accepted %q with more after the value", data)
		}
		if err := noDuplicates(json.NewDecoder(bytes.NewReader(data))); err != nil {
			t.Fatalf("Check accepted %q: %v", data, err)
		}
		var doc any
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatal(err)
		}
		if problem := exactKeys(doc, sampleType, 1); problem != "" {
			t.Fatalf("Check accepted %q: %s", data, problem)
		}
		if !lenient && !utf8.Valid(data) {
			t.Fatalf("Check accepted invalid UTF-8 in %q", data)
		}
		// Decode, encode, decode: the same value.
		enc, merr := json.Marshal(v)
		if merr != nil {
			t.Fatalf("encoding an accepted value: %v", merr)
		}
		var v2 sample
		if err := Decode(enc, &v2, opts); err != nil {
			t.Fatalf("Decode of the encoding %s of an accepted value: %v", enc, err)
		}
		if enc2, _ := json.Marshal(v2); !bytes.Equal(enc, enc2) {
			t.Fatalf("decode, encode, decode is not stable:\n%s\n%s", enc, enc2)
		}
	})
}

// noDuplicates walks a document's tokens and reports a key twice in one
// object.
func noDuplicates(dec *json.Decoder) error {
	type frame struct {
		object bool
		keys   map[string]bool
		key    bool // the next string token is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.key {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				continue
			}
			k := tok.(string)
			if top.keys[k] {
				return errors.New("duplicate key " + k)
			}
			top.keys[k] = true
			top.key = false
			continue
		}
		if top != nil && top.object {
			top.key = true // this token is a value
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{object: true, keys: map[string]bool{}, key: true})
		case json.Delim('['):
			stack = append(stack, &frame{})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
	}
}

// exactKeys walks a decoded document along t: every key of an object that
// decodes into a struct must be a field's exact name, and nothing may nest
// deeper than MaxDepth.
func exactKeys(doc any, t reflect.Type, depth int) string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch x := doc.(type) {
	case map[string]any:
		if depth > MaxDepth {
			return "too deep"
		}
		for k, v := range x {
			var ft reflect.Type
			switch {
			case t == nil || t.Kind() == reflect.Interface || t == reflect.TypeFor[json.RawMessage]() || t == reflect.TypeFor[pair]():
			case t.Kind() == reflect.Map:
				ft = t.Elem()
			case t.Kind() == reflect.Struct:
				f, ok := fieldByExactName(t, k)
				if !ok {
					return "key " + k + " is not a field of " + t.String()
				}
				ft = f
			}
			if p := exactKeys(v, ft, depth+1); p != "" {
				return p
			}
		}
	case []any:
		if depth > MaxDepth {
			return "too deep"
		}
		var et reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			et = t.Elem()
		}
		for _, v := range x {
			if p := exactKeys(v, et, depth+1); p != "" {
				return p
			}
		}
	}
	return ""
}

func fieldByExactName(t reflect.Type, name string) (reflect.Type, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && tag == "" {
			if ft, ok := fieldByExactName(f.Type, name); ok {
				return ft, true
			}
			continue
		}
		if tag == "-" || !f.IsExported() {
			continue
		}
		if tag == "" {
			tag = f.Name
		}
		if tag == name {
			return f.Type, true
		}
	}
	return nil, false
}

func TestPathAt(t *testing.T) {
	for _, tt := range []struct{ doc, want string }{
		{`{"events":[{"id":"a"},{"value":NaN}]}`, "events[1].value"},
		{`{"events":[{"id":"a"},{"value":1,"x":[1,2,tru]}]}`, "events[1].x[2]"},
		{`{"events":[{"id":"a"} {"id":"b"}]}`, "events[1]"},
		{`{"events":[{"i\u0064":NaN}]}`, "events[0].id"},
		{`{"a":{"b":1},"c":{`, "c"},
		{`{"a":{"b":1} "c"`, ""},
		{`[1,2,{"a":[]},x]`, "[3]"},
		{`x`, ""},
		{``, ""},
		{strings.Repeat("[", 20000) + "x", strings.Repeat("[0]", 9999)},
	} {
		got := PathAt([]byte(tt.doc))
		if got != tt.want && !(len(tt.doc) > 20000 && strings.HasPrefix(got, "[0][0]")) {
			t.Errorf("PathAt(%.60q) = %.60q, want %.60q", tt.doc, got, tt.want)
		}
	}
}
