package assign

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// fuzzAttrs are attribute maps every fuzzed condition is matched against.
var fuzzAttrs = []map[string]any{
	nil,
	{},
	{"country": "FR", "stage": "prospect", "age": 30.0, "beta": true, "plan": nil},
	{"name": "hello", "tags": []any{"a", "b", 1.0, nil, []any{"x"}, map[string]any{"a": 1.0}}, "version": "1.2.3-rc.1"},
	{"a": map[string]any{"b": map[string]any{"c": []any{1.0, "2", false}}}, "n": 5, "x": json.Number("7")},
	{"items": []any{map[string]any{"a": 1.0}, map[string]any{"b": 2.0}}, "$groups": []any{"a"}, "": ""},
}

func FuzzParseCondition(f *testing.F) {
	for _, c := range loadConformanceCases(f) {
		f.Add([]byte(c.Condition))
	}
	for _, s := range []string{``, `null`, `{}`, `[]`, `{"a":{"$size":{"$gt":{"$lt":1}}}}`, `{"a.0.b":{"$elemMatch":{"$and":[{"c":{"$vgt":1}}]}}}`,
		`{"a":` + strings.Repeat(`{"$not":`, MaxConditionDepth-2) + `{"$eq":1}` + strings.Repeat("}", MaxConditionDepth-2) + `}`,
		`{"a":` + strings.Repeat(`{"$not":`, MaxConditionDepth-1) + `{"$eq":1}` + strings.Repeat("}", MaxConditionDepth-1) + `}`,
		`{"a":{"$in":[1e-400,"x\ud800"]},"b":{"$regex":"^(a|b)+$"}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		attrs := fuzzAttrs
		var own map[string]any
		if json.Unmarshal(data, &own) == nil {
			attrs = append(attrs[:len(attrs):len(attrs)], own)
		}
		strict, err := ParseCondition(data)
		if err != nil {
			var ce *ConditionError
			if !errors.As(err, &ce) || !strings.HasPrefix(ce.Path, conditionRoot) {
				t.Fatalf("ParseCondition(%q) = %v, want a *ConditionError rooted at %q", data, err, conditionRoot)
			}
		}
		// The lenient parser rejects only what the strict one rejects as
		// JSON it cannot decode (invalid, or a number beyond float64).
		lenient, lerr := parseCondition(data, true)
		if lerr != nil && (err == nil || err.Error() != lerr.Error() || !strings.Contains(lerr.Error(), "JSON")) {
			t.Fatalf("lenient parseCondition(%q) = %v, strict = %v", data, lerr, err)
		}
		if lerr == nil && !json.Valid(data) && len(bytes.Trim(data, jsonSpace)) > 0 {
			t.Fatalf("lenient parseCondition(%q) accepted invalid JSON", data)
		}
		for _, a := range attrs {
			var got bool
			if lerr == nil {
				got = lenient.Match(a)
			}
			if err == nil {
				if s := strict.Match(a); s != got {
					t.Fatalf("condition %s on %v: strict Match = %v, lenient = %v", data, a, s, got)
				}
			}
		}
		if err != nil || len(bytes.Trim(data, jsonSpace)) == 0 {
			return
		}
		// Accepted: within the depth limit, and decode, encode, decode
		// gives a condition that matches the same attributes.
		var doc any
		if json.Unmarshal(data, &doc) != nil {
			t.Fatalf("ParseCondition accepted %q, which is not JSON", data)
		}
		if d := depthOf(doc); d > MaxConditionDepth {
			t.Fatalf("ParseCondition accepted %q, %d levels deep", data, d)
		}
		enc, merr := json.Marshal(doc)
		if merr != nil {
			t.Fatalf("encoding the accepted condition %q: %v", data, merr)
		}
		again, err := ParseCondition(enc)
		if err != nil {
			t.Fatalf("ParseCondition(%q) accepted, its encoding %s refused: %v", data, enc, err)
		}
		for _, a := range attrs {
			if x, y := strict.Match(a), again.Match(a); x != y {
				t.Fatalf("condition %s and its encoding %s differ on %v: %v, %v", data, enc, a, x, y)
			}
		}
	})
}

// depthOf is the nesting of objects and arrays of a decoded JSON value.
func depthOf(v any) int {
	d := 0
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			d = max(d, depthOf(e))
		}
		return d + 1
	case []any:
		for _, e := range x {
			d = max(d, depthOf(e))
		}
		return d + 1
	}
	return 0
}

func FuzzCompile(f *testing.F) {
	for _, e := range goldenExperiments() {
		data, err := json.Marshal(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for i, c := range loadConformanceCases(f) {
		if i%10 != 0 {
			continue
		}
		e := halves("fuzz")
		e.Targeting = c.Condition
		data, _ := json.Marshal(e)
		f.Add(data)
	}
	f.Add([]byte(`{"key":"x","variants":[{"key":"a","weight":0.3333333333},{"key":"b","weight":0.6666666667}],"traffic":0.999999,"running":true}`))
	f.Add([]byte(`{"key":"x","salt":"s","variants":[{"key":"a","weight":1e-9},{"key":"b","weight":0.999999999}],"traffic":1,"layer":"l","layer_range":[9999,10000],"overrides":{"u":"b"},"running":true}`))
	units := []string{"", "u", "user-42", "ünïcödé", strings.Repeat("z", 300), "qa-customer-1"}
	f.Fuzz(func(t *testing.T, data []byte) {
		var e Experiment
		if json.Unmarshal(data, &e) != nil {
			return
		}
		s, err := Compile(Config{Experiments: []Experiment{e}})
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field == "" || ve.Msg == "" {
				t.Fatalf("Compile error %v is not a complete *ValidationError", err)
			}
			return
		}
		for id := range e.Overrides {
			units = append(units[:len(units):len(units)], id)
		}
		for _, u := range units {
			for _, a := range fuzzAttrs {
				r := s.Assign(e.Key, u, a)
				if again := s.Assign(e.Key, u, a); again.Index != r.Index || again.Reason != r.Reason {
					t.Fatalf("Assign(%q) is not deterministic", u)
				}
				if r.Index < -1 || r.Index >= len(e.Variants) {
					t.Fatalf("Assign(%q).Index = %d, want -1..%d", u, r.Index, len(e.Variants)-1)
				}
				if r.Enrolled != (r.Index >= 0) || (r.Index >= 0 && r.Variant != e.Variants[r.Index].Key) || (r.Index < 0 && r.Variant != "") {
					t.Fatalf("Assign(%q) = %+v is inconsistent", u, r)
				}
				if !e.Running && r.Reason != ReasonNotRunning {
					t.Fatalf("Assign(%q) of a stopped experiment = %+v", u, r)
				}
			}
		}
	})
}
