package assign

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseConditionEmpty(t *testing.T) {
	for _, raw := range []string{"", "  ", "null", "{}", " { } "} {
		c, err := ParseCondition(json.RawMessage(raw))
		if err != nil {
			t.Fatalf("ParseCondition(%q) = %v", raw, err)
		}
		if !c.IsEmpty() || !c.Match(nil) || !c.Match(map[string]any{"a": 1.0}) {
			t.Errorf("ParseCondition(%q) does not match everything", raw)
		}
	}
	var nilCond *Condition
	if !nilCond.Match(nil) || !nilCond.IsEmpty() {
		t.Error("nil *Condition does not match everything")
	}
}

func TestParseConditionErrors(t *testing.T) {
	tests := []struct {
		cond string
		path string
	}{
		{`[]`, "targeting"},
		{`"country"`, "targeting"},
		{`5`, "targeting"},
		{`{"a":`, "targeting"},
		{`{"a": 1} {"b": 2}`, "targeting"},
		{`{"a": {"$gt": 1e400}}`, "targeting"},
		{`{"country": {"$in": "FR"}}`, "targeting.country.$in"},
		{`{"country": {"$nin": {"a": 1}}}`, "targeting.country.$nin"},
		{`{"country": {"$ini": null}}`, "targeting.country.$ini"},
		{`{"tags": {"$all": "a"}}`, "targeting.tags.$all"},
		{`{"tags": {"$alli": 1}}`, "targeting.tags.$alli"},
		{`{"tags": {"$all": [{"$bad": 1}]}}`, "targeting.tags.$all[0].$bad"},
		{`{"name": {"$regex": "("}}`, "targeting.name.$regex"},
		{`{"name": {"$regex": "(?<=a)b"}}`, "targeting.name.$regex"},
		{`{"name": {"$regexi": 5}}`, "targeting.name.$regexi"},
		{`{"name": {"$regx": "a"}}`, "targeting.name.$regx"},
		{`{"name": {"$not": {"$regx": "a"}}}`, "targeting.name.$not.$regx"},
		{`{"age": {"$gt": true}}`, "targeting.age.$gt"},
		{`{"age": {"$lte": null}}`, "targeting.age.$lte"},
		{`{"age": {"$lt": [1]}}`, "targeting.age.$lt"},
		{`{"v": {"$vgt": false}}`, "targeting.v.$vgt"},
		{`{"a": {"$type": "int"}}`, "targeting.a.$type"},
		{`{"a": {"$type": 1}}`, "targeting.a.$type"},
		{`{"a": {"$exists": 1}}`, "targeting.a.$exists"},
		{`{"a": {"$size": "1"}}`, "targeting.a.$size"},
		{`{"a": {"$size": {}}}`, "targeting.a.$size"},
		{`{"a": {"$elemMatch": [1]}}`, "targeting.a.$elemMatch"},
		{`{"a": {"$elemMatch": {"b": {"$in": 1}}}}`, "targeting.a.$elemMatch.b.$in"},
		{`{"a": {"$or": [{"b": 1}]}}`, "targeting.a.$or"},
		{`{"id": {"$inGroup": "g"}}`, "targeting.id.$inGroup"},
		{`{"id": {"$notInGroup": "g"}}`, "targeting.id.$notInGroup"},
		{`{"$savedGroup": {"id": "g"}}`, "targeting.$savedGroup"},
		{`{"$in": ["FR"]}`, "targeting.$in"},
		{`{"$and": {"a": 1}}`, "targeting.$and"},
		{`{"$or": "a"}`, "targeting.$or"},
		{`{"$nor": [1]}`, "targeting.$nor[0]"},
		{`{"$or": [{"a": 1}, {"b": {"$in": 2}}]}`, "targeting.$or[1].b.$in"},
		{`{"$not": [1]}`, "targeting.$not"},
		{`{"$not": {"$and": [{"x": {"$gt": {}}}]}}`, "targeting.$not.$and[0].x.$gt"},
	}
	for _, tt := range tests {
		t.Run(tt.cond, func(t *testing.T) {
			_, err := ParseCondition(json.RawMessage(tt.cond))
			var ce *ConditionError
			if !errors.As(err, &ce) {
				t.Fatalf("ParseCondition(%s) = %v, want a *ConditionError", tt.cond, err)
			}
			if ce.Path != tt.path {
				t.Errorf("ParseCondition(%s) path = %q, want %q (%v)", tt.cond, ce.Path, tt.path, err)
			}
			if got, want := err.Error(), ce.Path+": "+ce.Msg; got != want {
				t.Errorf("Error() = %q, want %q", got, want)
			}
		})
	}
}

func TestConditionMatch(t *testing.T) {
	manyCountries := `["AT","BE","CH","DE","DK","ES","FI","FR","IE","IT","NL","PT","SE"]`
	tests := []struct {
		name  string
		cond  string
		attrs map[string]any
		want  bool
	}{
		{"contract example", `{"country": {"$in": ["FR", "BE"]}, "stage": "prospect"}`, map[string]any{"country": "BE", "stage": "prospect"}, true},
		{"contract example miss", `{"country": {"$in": ["FR", "BE"]}, "stage": "prospect"}`, map[string]any{"country": "BE", "stage": "customer"}, false},
		{"nil attributes", `{"country": "FR"}`, nil, false},
		{"nil attributes and $exists false", `{"country": {"$exists": false}}`, nil, true},
		{"Go int attribute", `{"age": {"$gte": 18}}`, map[string]any{"age": 30}, true},
		{"Go int64 equality", `{"age": 30}`, map[string]any{"age": int64(30)}, true},
		{"Go uint8 $in", `{"age": {"$in": [1, 2]}}`, map[string]any{"age": uint8(2)}, true},
		{"json.Number attribute", `{"age": {"$lt": 18}}`, map[string]any{"age": json.Number("17.5")}, true},
		{"Go int is a number", `{"age": {"$type": "number"}}`, map[string]any{"age": 3}, true},
		{"nested path", `{"user.plan.tier": "gold"}`, map[string]any{"user": map[string]any{"plan": map[string]any{"tier": "gold"}}}, true},
		{"path into array index", `{"tags.1": "b"}`, map[string]any{"tags": []any{"a", "b"}}, true},
		{"path past array end", `{"tags.2": {"$exists": false}}`, map[string]any{"tags": []any{"a", "b"}}, true},
		{"non-canonical index", `{"tags.01": {"$exists": false}}`, map[string]any{"tags": []any{"a", "b"}}, true},
		{"long $in uses an index", `{"country": {"$in": ` + manyCountries + `}}`, map[string]any{"country": "PT"}, true},
		{"long $in miss", `{"country": {"$in": ` + manyCountries + `}}`, map[string]any{"country": "US"}, false},
		{"long $ini", `{"country": {"$ini": ` + manyCountries + `}}`, map[string]any{"country": "pt"}, true},
		{"long $nini", `{"country": {"$nini": ` + manyCountries + `}}`, map[string]any{"country": "us"}, true},
		{"$ini with a long value", `{"ua": {"$ini": ["a"]}}`, map[string]any{"ua": string(make([]byte, 100))}, false},
		{"$ini unicode", `{"city": {"$ini": ["ÉVRY"]}}`, map[string]any{"city": "évry"}, true},
		{"$alli unicode", `{"tags": {"$alli": ["ÉTÉ"]}}`, map[string]any{"tags": []any{"été"}}, true},
		{"$in null", `{"plan": {"$in": [null, "pro"]}}`, map[string]any{}, true},
		{"$in booleans", `{"beta": {"$in": [true]}}`, map[string]any{"beta": true}, true},
		{"$in object", `{"o": {"$in": [{"a": 1}]}}`, map[string]any{"o": map[string]any{"a": 1.0}}, true},
		{"$eq object", `{"o": {"$eq": {"$a": 1}}}`, map[string]any{"o": map[string]any{"$a": 1.0}}, true},
		{"$all empty", `{"tags": {"$all": []}}`, map[string]any{"tags": []any{}}, true},
		{"$elemMatch empty object", `{"items": {"$elemMatch": {}}}`, map[string]any{"items": []any{1.0}}, true},
		{"$size with operators", `{"items": {"$size": {"$gte": 2, "$lte": 3}}}`, map[string]any{"items": []any{1.0, 2.0, 3.0}}, true},
		{"$vgte number operand", `{"build": {"$vgte": 10}}`, map[string]any{"build": 9}, false},
		{"$veq big number", `{"build": {"$veq": 1e21}}`, map[string]any{"build": 1e21}, true},
		{"regex is a search", `{"ua": {"$regex": "Mobi"}}`, map[string]any{"ua": "Android Mobile"}, true},
		{"$regexi", `{"ua": {"$regexi": "^android"}}`, map[string]any{"ua": "Android Mobile"}, true},
		{"$not at the top", `{"$not": {"country": "FR"}}`, map[string]any{"country": "BE"}, true},
		{"$nor", `{"$nor": [{"a": 1}, {"b": 1}]}`, map[string]any{"a": 2.0}, true},
		{"attribute named like an operator", `{"$groups": {"$elemMatch": {"$eq": "a"}}}`, map[string]any{"$groups": []any{"a"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseCondition(json.RawMessage(tt.cond))
			if err != nil {
				t.Fatalf("ParseCondition(%s) = %v", tt.cond, err)
			}
			if got := c.Match(tt.attrs); got != tt.want {
				t.Errorf("ParseCondition(%s).Match(%v) = %v, want %v", tt.cond, tt.attrs, got, tt.want)
			}
		})
	}
}

func TestPaddedVersion(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"1.2.3", "    1-    2-    3-~"},
		{"v1.2.3", "    1-    2-    3-~"},
		{"1.2.3+build.7", "    1-    2-    3-~"},
		{"1.2.3-rc.1", "    1-    2-    3-rc-    1"},
		{"", "    0"},
		{"v", ""},
		{"123456", "123456"},
		{"1..2", "    1--    2-~"}, // three parts, one empty
		{"1.2.3-٣", "    1-    2-    3-٣"},
		{"1+a\nb", "1+a\nb"},
		{"1+a\nb+c", "1+a\nb"},
	}
	for _, tt := range tests {
		if got := string(appendPaddedVersion(nil, tt.in)); got != tt.want {
			t.Errorf("appendPaddedVersion(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestJSNumberString(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{0, "0"},
		{2, "2"},
		{-1.5, "-1.5"},
		{1e21, "1e+21"},
		{1.5e300, "1.5e+300"},
		{123456789012, "123456789012"},
		{0.000001, "0.000001"},
		{1e-7, "1e-7"},
		{-2.5e-10, "-2.5e-10"},
	}
	for _, tt := range tests {
		if got := jsNumberString(tt.in); got != tt.want {
			t.Errorf("jsNumberString(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestConditionCheapTermsFirst(t *testing.T) {
	c, err := ParseCondition(json.RawMessage(`{"a_ua": {"$regex": "Mobile"}, "b_version": {"$vgte": "1.0.0"}, "z_country": "FR"}`))
	if err != nil {
		t.Fatal(err)
	}
	terms, ok := c.root.(allCond)
	if !ok || len(terms) != 3 {
		t.Fatalf("root = %T, want a conjunction of 3 terms", c.root)
	}
	var order []string
	for _, n := range terms {
		order = append(order, n.(*fieldCond).path[0].key)
	}
	if want := []string{"z_country", "b_version", "a_ua"}; !slices.Equal(order, want) {
		t.Errorf("evaluation order = %v, want %v", order, want)
	}
}

// TestConditionDepthLimit: a condition may nest MaxConditionDepth levels
// of objects and arrays, not one more; the refusal names where.
func TestConditionDepthLimit(t *testing.T) {
	// nest is a condition n levels deep: {"a": {"$not": ... {"$eq": 1}}}.
	nest := func(n int) string {
		if n == 1 {
			return `{"a":1}`
		}
		return `{"a":` + strings.Repeat(`{"$not":`, n-2) + `{"$eq":1}` + strings.Repeat("}", n-2) + `}`
	}
	for _, n := range []int{1, 7, MaxConditionDepth} {
		if _, err := ParseCondition(json.RawMessage(nest(n))); err != nil {
			t.Errorf("a condition %d levels deep: %v, want it accepted: %s", n, err, nest(n))
		}
	}
	_, err := ParseCondition(json.RawMessage(nest(MaxConditionDepth + 1)))
	var ce *ConditionError
	if !errors.As(err, &ce) || ce.Path != "targeting.a"+strings.Repeat(".$not", MaxConditionDepth-1) || !strings.Contains(ce.Msg, "16 levels") {
		t.Errorf("a condition %d levels deep: %v, want a ConditionError naming the level too deep", MaxConditionDepth+1, err)
	}
	// Values count too: an $in list of lists.
	deep := `{"a":{"$in":` + strings.Repeat("[", MaxConditionDepth-2) + strings.Repeat("]", MaxConditionDepth-2) + `}}`
	if _, err := ParseCondition(json.RawMessage(deep)); err != nil {
		t.Errorf("%s: %v, want it accepted", deep, err)
	}
	deeper := `{"a":{"$in":` + strings.Repeat("[", MaxConditionDepth-1) + strings.Repeat("]", MaxConditionDepth-1) + `}}`
	if _, err := ParseCondition(json.RawMessage(deeper)); !errors.As(err, &ce) || ce.Path != "targeting.a.$in"+strings.Repeat("[0]", MaxConditionDepth-2) {
		t.Errorf("%s: %v, want a ConditionError at the level too deep", deeper, err)
	}
}
