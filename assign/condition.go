package assign

import (
	"encoding/json"
	"strconv"
	"strings"
)

// Condition is a compiled targeting condition: GrowthBook's condition
// language, spec 0.12.0 (a MongoDB-style JSON object evaluated on the
// unit's attributes). It is an immutable tree of typed nodes: Match does no
// JSON parsing and, for the common operators, no allocation. The zero value
// and a nil *Condition match everything.
type Condition struct {
	root condNode // nil matches everything
}

// ConditionError is a targeting condition that can never be valid. Path
// locates the fault in the API's field notation, rooted at "targeting"
// (e.g. "targeting.country.$in", "targeting.$or[1].age.$gt").
type ConditionError struct {
	Path string
	Msg  string
}

// Error formats the error as "path: message".
func (e *ConditionError) Error() string {
	return e.Path + ": " + e.Msg
}

// MaxConditionDepth bounds how deeply a condition nests JSON objects and
// arrays (the condition itself is level 1): every SDK compiles it, and
// evaluation recurses through it. GrowthBook's own cases nest at most 7.
const MaxConditionDepth = 16

// jsonSpace is the whitespace JSON allows around a value.
const jsonSpace = " \t\r\n"

// conditionRoot is the path of a condition's root in error messages.
const conditionRoot = "targeting"

// ParseCondition compiles a targeting condition. nil, empty, null and {}
// give a condition that matches everything. A condition that can never be
// valid is rejected with a *ConditionError naming its path: a root that is
// not an object, invalid JSON, an unknown operator, saved-group operators
// (not supported yet), a reference to a saved audience ({"$audience": key};
// see ParseConditionWith), a logical operator ($and, $or, $nor) applied to an
// attribute's value, an operand of the wrong type ($in without an array,
// $regex with an invalid expression, $gt with a boolean, $type with an
// unknown type name, $exists with a non-boolean, ...).
func ParseCondition(raw json.RawMessage) (*Condition, error) {
	return parseCondition(raw, false)
}

// parseCondition compiles raw. In lenient mode, which mirrors GrowthBook's
// evaluator for the conformance cases, nothing is rejected: a part that
// cannot be evaluated (an unknown operator, a malformed operand) becomes an
// "unknown" node that never matches, even under $not or $nor.
func parseCondition(raw json.RawMessage, lenient bool) (*Condition, error) {
	return parseConditionWith(raw, nil, lenient)
}

// tooDeep returns the path of the first object or array of v (in key
// order) below MaxConditionDepth levels; v is at path, at level depth if
// it is an object or array.
func tooDeep(v any, path string, depth int) (string, bool) {
	switch x := v.(type) {
	case map[string]any:
		if depth > MaxConditionDepth {
			return path, true
		}
		for _, k := range sortedKeys(x) {
			if p, deep := tooDeep(x[k], path+"."+k, depth+1); deep {
				return p, true
			}
		}
	case []any:
		if depth > MaxConditionDepth {
			return path, true
		}
		for i, e := range x {
			if p, deep := tooDeep(e, path+"["+strconv.Itoa(i)+"]", depth+1); deep {
				return p, true
			}
		}
	}
	return "", false
}

// compile compiles a decoded JSON condition.
func (cc *condCompiler) compile(v any) (*Condition, error) {
	root := cc.root
	if root == "" {
		root = conditionRoot
	}
	m, ok := v.(map[string]any)
	if !ok {
		n, err := cc.fail(root, "must be a JSON object")
		if err != nil {
			return nil, err
		}
		return &Condition{root: n}, nil
	}
	if len(m) == 0 {
		return &Condition{}, nil
	}
	n, err := cc.object(m, root)
	if err != nil {
		return nil, err
	}
	return &Condition{root: n}, nil
}

// Match reports whether attrs satisfy the condition. attrs are as
// encoding/json decodes an object into map[string]any (float64 numbers,
// string, bool, nil, []any, map[string]any); Go integer and float kinds and
// json.Number are also accepted as numbers. A missing attribute is null.
func (c *Condition) Match(attrs map[string]any) bool {
	if c == nil || c.root == nil {
		return true
	}
	return c.root.eval(attrs) == yes
}

// IsEmpty reports whether the condition matches everything by having no
// terms.
func (c *Condition) IsEmpty() bool {
	return c == nil || c.root == nil
}

// tri is the result of evaluating a condition: yes, no, or unknown for a
// part that cannot be evaluated. Logic is Kleene's: unknown survives $not,
// an $and is no if any term is no, an $or is yes if any term is yes. Only
// yes matches.
type tri uint8

const (
	no tri = iota
	yes
	unknown
)

func triOf(b bool) tri {
	if b {
		return yes
	}
	return no
}

func (t tri) not() tri {
	switch t {
	case yes:
		return no
	case no:
		return yes
	}
	return unknown
}

// condNode is a condition on an object (the attributes, or an element under
// $elemMatch). obj may be any JSON value; paths into non-objects are null.
type condNode interface {
	eval(obj any) tri
}

// allCond is an $and (and an object's implicit conjunction).
type allCond []condNode

func (a allCond) eval(obj any) tri {
	out := yes
	for _, n := range a {
		switch n.eval(obj) {
		case no:
			return no
		case unknown:
			out = unknown
		}
	}
	return out
}

// anyCond is an $or. As in GrowthBook, an empty $or matches.
type anyCond []condNode

func (a anyCond) eval(obj any) tri {
	if len(a) == 0 {
		return yes
	}
	out := no
	for _, n := range a {
		switch n.eval(obj) {
		case yes:
			return yes
		case unknown:
			out = unknown
		}
	}
	return out
}

// notCond is a $not, and with anyCond a $nor (so an empty $nor fails).
type notCond struct{ inner condNode }

func (n notCond) eval(obj any) tri { return n.inner.eval(obj).not() }

// constCond is a condition with a fixed result.
type constCond tri

func (c constCond) eval(any) tri { return tri(c) }

// fieldCond tests the value at a dot path.
type fieldCond struct {
	path  []pathSeg
	match valueNode
}

func (f *fieldCond) eval(obj any) tri {
	return f.match.eval(lookupPath(obj, f.path))
}

// pathSeg is one segment of a dot path, split at compile time. index is the
// segment as an array index (canonical decimal), or -1.
type pathSeg struct {
	key   string
	index int
}

func splitPath(p string) []pathSeg {
	parts := strings.Split(p, ".")
	segs := make([]pathSeg, len(parts))
	for i, s := range parts {
		segs[i] = pathSeg{key: s, index: -1}
		if n, err := strconv.Atoi(s); err == nil && n >= 0 && strconv.Itoa(n) == s {
			segs[i].index = n
		}
	}
	return segs
}

// lookupPath follows path through objects (by key) and arrays (by index),
// returning nil (null) when a step is missing.
func lookupPath(cur any, path []pathSeg) any {
	for i := range path {
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[path[i].key]
			if !ok {
				return nil
			}
			cur = v
		case []any:
			n := path[i].index
			if n < 0 || n >= len(c) {
				return nil
			}
			cur = c[n]
		default:
			return nil
		}
	}
	return cur
}
