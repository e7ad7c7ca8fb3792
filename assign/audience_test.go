package assign

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

// audienceFile is the shape of testdata/audience-cases.json.
type audienceFile struct {
	Audiences      Audiences `json:"audiences"`
	Cases          []audienceCase
	Errors         []audienceErrorCase
	ErrorAudiences Audiences `json:"error_audiences"`
}

// audienceCase is [name, condition, attributes, expected].
type audienceCase struct {
	Name       string
	Condition  json.RawMessage
	Attributes map[string]any
	Expected   bool
}

// audienceErrorCase is [name, condition, path, message substring].
type audienceErrorCase struct {
	Name      string
	Condition json.RawMessage
	Path      string
	Contains  string
}

func loadAudienceCases(tb testing.TB) audienceFile {
	tb.Helper()
	raw, err := os.ReadFile("testdata/audience-cases.json")
	if err != nil {
		tb.Fatal(err)
	}
	var f struct {
		Audiences      Audiences           `json:"audiences"`
		Cases          [][]json.RawMessage `json:"cases"`
		Errors         [][]json.RawMessage `json:"errors"`
		ErrorAudiences Audiences           `json:"error_audiences"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		tb.Fatalf("decode audience cases: %v", err)
	}
	out := audienceFile{Audiences: f.Audiences, ErrorAudiences: f.ErrorAudiences}
	for i, c := range f.Cases {
		var ac audienceCase
		if len(c) != 4 || json.Unmarshal(c[0], &ac.Name) != nil || json.Unmarshal(c[2], &ac.Attributes) != nil || json.Unmarshal(c[3], &ac.Expected) != nil {
			tb.Fatalf("audience case %d is not [name, condition, attributes, expected]", i)
		}
		ac.Condition = c[1]
		out.Cases = append(out.Cases, ac)
	}
	for i, c := range f.Errors {
		var ec audienceErrorCase
		if len(c) != 4 || json.Unmarshal(c[0], &ec.Name) != nil || json.Unmarshal(c[2], &ec.Path) != nil || json.Unmarshal(c[3], &ec.Contains) != nil {
			tb.Fatalf("audience error case %d is not [name, condition, path, contains]", i)
		}
		ec.Condition = c[1]
		out.Errors = append(out.Errors, ec)
	}
	return out
}

// TestAudienceCases runs the audience conformance cases: each condition
// compiled with the file's audiences and matched against its attributes,
// and each faulty condition rejected at its path.
func TestAudienceCases(t *testing.T) {
	f := loadAudienceCases(t)
	if len(f.Cases) < 20 || len(f.Errors) < 5 {
		t.Fatalf("audience cases: %d cases and %d errors, want at least 20 and 5", len(f.Cases), len(f.Errors))
	}
	for _, c := range f.Cases {
		t.Run(c.Name, func(t *testing.T) {
			cond, err := ParseConditionWith(c.Condition, f.Audiences)
			if err != nil {
				t.Fatalf("ParseConditionWith(%s) = %v", c.Condition, err)
			}
			if got := cond.Match(c.Attributes); got != c.Expected {
				t.Errorf("ParseConditionWith(%s).Match(%v) = %v, want %v", c.Condition, c.Attributes, got, c.Expected)
			}
		})
	}
	for _, c := range f.Errors {
		t.Run("error/"+c.Name, func(t *testing.T) {
			_, err := ParseConditionWith(c.Condition, f.ErrorAudiences)
			var ce *ConditionError
			if !errors.As(err, &ce) {
				t.Fatalf("ParseConditionWith(%s) = %v, want a *ConditionError", c.Condition, err)
			}
			if ce.Path != c.Path || !strings.Contains(ce.Msg, c.Contains) {
				t.Errorf("ParseConditionWith(%s) = %q at %q, want %q at %q", c.Condition, ce.Msg, ce.Path, c.Contains, c.Path)
			}
		})
	}
}

func TestParseConditionWithoutAudiences(t *testing.T) {
	_, err := ParseCondition(json.RawMessage(`{"$audience": "fr"}`))
	var ce *ConditionError
	if !errors.As(err, &ce) || ce.Path != "targeting.$audience" || !strings.Contains(ce.Msg, `unknown audience "fr"`) {
		t.Fatalf(`ParseCondition({"$audience": "fr"}) = %v, want unknown audience at targeting.$audience`, err)
	}
}

func TestAudienceExpansionLimit(t *testing.T) {
	// a0 references a1 twice, a1 references a2 twice, ...: 2^n inlinings.
	aud := Audiences{"a10": json.RawMessage(`{"x": 1}`)}
	for i := 9; i >= 0; i-- {
		next := "a" + string(rune('0'+i+1))
		if i == 9 {
			next = "a10"
		}
		aud["a"+string(rune('0'+i))] = json.RawMessage(`{"$or": [{"$audience": "` + next + `"}, {"$and": [{"$audience": "` + next + `"}]}]}`)
	}
	_, err := ParseConditionWith(json.RawMessage(`{"$audience": "a0"}`), aud)
	if err == nil || !strings.Contains(err.Error(), "more than 64 times") {
		t.Fatalf("ParseConditionWith(a0) = %v, want the expansion limit", err)
	}
	if _, err := ParseConditionWith(json.RawMessage(`{"$audience": "a8"}`), aud); err != nil {
		t.Fatalf("ParseConditionWith(a8) = %v, want nil (7 inlinings)", err)
	}
}

func TestConditionAudiences(t *testing.T) {
	aud := Audiences{
		"a": json.RawMessage(`{"$audience": "b"}`),
		"b": json.RawMessage(`{"x": 1}`),
		"c": json.RawMessage(`{"$or": [{"$audience": "a"}, {"$audience": "c"}]}`),
	}
	tests := []struct {
		name string
		cond string
		want string
	}{
		{"none", `{"x": 1}`, ""},
		{"direct and transitive", `{"$audience": "a"}`, "a,b"},
		{"a cycle terminates", `{"$nor": [{"$audience": "c"}]}`, "a,b,c"},
		{"unknown is listed", `{"$and": [{"$audience": "zz"}]}`, "zz"},
		{"invalid JSON", `{`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := strings.Join(ConditionAudiences(json.RawMessage(tt.cond), aud), ",")
			if got != tt.want {
				t.Errorf("ConditionAudiences(%s) = %q, want %q", tt.cond, got, tt.want)
			}
		})
	}
}

func TestCompileWithAudiences(t *testing.T) {
	exp := Experiment{Key: "e", UnitType: "user", Traffic: 1, Running: true,
		Variants:  []Variant{{Key: "a", Weight: 0.5}, {Key: "b", Weight: 0.5}},
		Targeting: json.RawMessage(`{"$audience": "fr", "beta": true}`)}
	snap, err := Compile(Config{Experiments: []Experiment{exp}, Audiences: Audiences{"fr": json.RawMessage(`{"country": "FR"}`)}})
	if err != nil {
		t.Fatalf("Compile = %v", err)
	}
	if r := snap.Assign("e", "u1", map[string]any{"country": "FR", "beta": true}); !r.Enrolled {
		t.Errorf("Assign(FR, beta) = %+v, want enrolled", r)
	}
	if r := snap.Assign("e", "u1", map[string]any{"country": "DE", "beta": true}); r.Reason != ReasonTargeting {
		t.Errorf("Assign(DE, beta) = %+v, want reason targeting", r)
	}
	_, err = Compile(Config{Experiments: []Experiment{exp}})
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Field != "targeting.$audience" {
		t.Fatalf("Compile without the audience = %v, want a ValidationError at targeting.$audience", err)
	}
}

// FuzzParseConditionWith compiles arbitrary conditions against the
// audience cases' audiences (cycles and faulty ones included): it never
// panics, and every error is a *ConditionError rooted at the targeting.
func FuzzParseConditionWith(f *testing.F) {
	cases := loadAudienceCases(f)
	aud := Audiences{}
	for k, v := range cases.Audiences {
		aud[k] = v
	}
	for k, v := range cases.ErrorAudiences {
		aud[k] = v
	}
	for _, c := range cases.Cases {
		f.Add([]byte(c.Condition))
	}
	for _, c := range cases.Errors {
		f.Add([]byte(c.Condition))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cond, err := ParseConditionWith(data, aud)
		if err != nil {
			var ce *ConditionError
			if !errors.As(err, &ce) || !strings.HasPrefix(ce.Path, conditionRoot) {
				t.Fatalf("ParseConditionWith(%q) = %v, want a *ConditionError rooted at %q", data, err, conditionRoot)
			}
		} else {
			for _, a := range fuzzAttrs {
				cond.Match(a)
			}
		}
		ConditionAudiences(data, aud)
	})
}

func TestParseAudience(t *testing.T) {
	aud := Audiences{
		"a":     json.RawMessage(`{"$audience": "b"}`),
		"b":     json.RawMessage(`{"$or": [{"x": 1}, {"$audience": "a"}]}`),
		"ok":    json.RawMessage(`{"$audience": "leaf", "y": 2}`),
		"leaf":  json.RawMessage(`{"x": 1}`),
		"empty": json.RawMessage(`{}`),
		"bad":   json.RawMessage(`{"x": {"$in": 3}}`),
	}
	tests := []struct {
		key, path, msg string
	}{
		{"a", "condition.$audience", "audience reference cycle: a → b → a"},
		{"b", "condition.$or[1].$audience", "audience reference cycle: b → a → b"},
		{"bad", "condition.x.$in", "must be an array"},
		{"ok", "", ""},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			_, err := ParseAudience(tt.key, aud)
			if tt.path == "" {
				if err != nil {
					t.Fatalf("ParseAudience(%q) = %v, want nil", tt.key, err)
				}
				return
			}
			var ce *ConditionError
			if !errors.As(err, &ce) || ce.Path != tt.path || !strings.Contains(ce.Msg, tt.msg) {
				t.Fatalf("ParseAudience(%q) = %v, want %q at %q", tt.key, err, tt.msg, tt.path)
			}
		})
	}
}
