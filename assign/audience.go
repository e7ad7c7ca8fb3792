package assign

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// AudienceOperator is the condition term that references a saved audience
// by key: {"$audience": "high-value-fr"}. It stands for the audience's
// condition and may appear wherever a condition object's terms may,
// beside other terms (implicit conjunction) and inside $and, $or, $nor and
// $not.
const AudienceOperator = "$audience"

// Audiences maps a saved audience's key to its condition (raw JSON in the
// targeting syntax, which may itself reference other audiences).
type Audiences map[string]json.RawMessage

// MaxAudienceExpansions bounds how many audience references compiling one
// condition inlines, counting each reference every time it is reached (an
// audience referenced twice is inlined twice). It keeps a chain of
// audiences that each reference the next one twice from compiling, and
// evaluating, to an exponentially large tree.
const MaxAudienceExpansions = 64

// ParseConditionWith compiles a targeting condition like ParseCondition,
// inlining every {"$audience": key} reference with the audience's
// condition from audiences at compile time, so that evaluation never looks
// an audience up. An unknown audience, a reference cycle (a → b → a) or an
// invalid referenced condition is a *ConditionError whose Path names the
// reference in the condition being compiled (e.g.
// "targeting.$or[1].$audience").
func ParseConditionWith(raw json.RawMessage, audiences Audiences) (*Condition, error) {
	return parseConditionWith(raw, audiences, false)
}

// ParseAudience compiles the condition of audience key, with the
// references it makes resolved in audiences (which must hold key). Errors
// are *ConditionError with paths rooted at "condition", and a cycle back
// to key is named from key (key → b → key).
func ParseAudience(key string, audiences Audiences) (*Condition, error) {
	raw := bytes.Trim(audiences[key], jsonSpace)
	if len(raw) == 0 || string(raw) == "null" {
		return &Condition{}, nil
	}
	const root = "condition"
	v, err := decodeCondition(raw, root, false)
	if err != nil {
		return nil, err
	}
	cc := &condCompiler{audiences: audiences, visiting: []string{key}, root: root}
	return cc.compile(v)
}

func parseConditionWith(raw json.RawMessage, audiences Audiences, lenient bool) (*Condition, error) {
	raw = bytes.Trim(raw, jsonSpace)
	if len(raw) == 0 || string(raw) == "null" {
		return &Condition{}, nil
	}
	v, err := decodeCondition(raw, conditionRoot, lenient)
	if err != nil {
		return nil, err
	}
	cc := &condCompiler{lenient: lenient, audiences: audiences}
	return cc.compile(v)
}

// decodeCondition decodes raw JSON and, in strict mode, checks its depth.
func decodeCondition(raw []byte, root string, lenient bool) (any, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		msg := "invalid JSON: " + err.Error()
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) && ute.Value == "number" {
			msg = "invalid JSON: a number is out of range"
		}
		return nil, &ConditionError{Path: root, Msg: msg}
	}
	if !lenient {
		if path, deep := tooDeep(v, root, 1); deep {
			return nil, &ConditionError{Path: path, Msg: fmt.Sprintf("nests deeper than %d levels of objects and arrays", MaxConditionDepth)}
		}
	}
	return v, nil
}

// audience compiles a {"$audience": key} term at path by compiling the
// audience's condition in place.
func (cc *condCompiler) audience(v any, path string) (condNode, error) {
	key, ok := v.(string)
	if !ok {
		return cc.fail(path, "must be the key of a saved audience (a string)")
	}
	raw, ok := cc.audiences[key]
	if !ok {
		return cc.fail(path, "unknown audience %q", key)
	}
	for i, k := range cc.visiting {
		if k == key {
			chain := append(append([]string{}, cc.visiting[i:]...), key)
			return cc.fail(path, "audience reference cycle: %s", strings.Join(chain, " → "))
		}
	}
	cc.inlined++
	if cc.inlined > MaxAudienceExpansions {
		return cc.fail(path, "references audiences more than %d times, counting nested references", MaxAudienceExpansions)
	}
	raw = bytes.Trim(raw, jsonSpace)
	if len(raw) == 0 || string(raw) == "null" {
		return constCond(yes), nil
	}
	inner, err := decodeCondition(raw, "condition", cc.lenient)
	if err != nil {
		return cc.fail(path, "audience %q: %v", key, err)
	}
	m, ok := inner.(map[string]any)
	if !ok {
		return cc.fail(path, "audience %q: condition: must be a JSON object", key)
	}
	if len(m) == 0 {
		return constCond(yes), nil
	}
	cc.visiting = append(cc.visiting, key)
	defer func() { cc.visiting = cc.visiting[:len(cc.visiting)-1] }()
	n, err := cc.object(m, "condition")
	if err != nil {
		// The fault is inside the audience: report it at the reference,
		// saying where in the audience it is.
		var ce *ConditionError
		if !errors.As(err, &ce) {
			return nil, err
		}
		return nil, &ConditionError{Path: path, Msg: fmt.Sprintf("audience %q: %s", key, ce.Error())}
	}
	return n, nil
}

// ConditionAudiences returns the keys of the audiences raw references,
// directly or through the audiences it references, sorted. It reads any
// "$audience" term with a string value anywhere in the condition; it does
// not validate, and a condition that is not JSON references nothing.
func ConditionAudiences(raw json.RawMessage, audiences Audiences) []string {
	seen := map[string]bool{}
	var visit func(raw json.RawMessage)
	visit = func(raw json.RawMessage) {
		var v any
		if json.Unmarshal(raw, &v) != nil {
			return
		}
		for _, k := range directRefs(v, nil) {
			if seen[k] {
				continue
			}
			seen[k] = true
			if a, ok := audiences[k]; ok {
				visit(a)
			}
		}
	}
	visit(raw)
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// directRefs appends the audience keys v references directly.
func directRefs(v any, dst []string) []string {
	switch x := v.(type) {
	case map[string]any:
		for _, k := range sortedKeys(x) {
			if s, ok := x[k].(string); ok && k == AudienceOperator {
				dst = append(dst, s)
				continue
			}
			dst = directRefs(x[k], dst)
		}
	case []any:
		for _, e := range x {
			dst = directRefs(e, dst)
		}
	}
	return dst
}
