package assign

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// condCompiler turns decoded JSON into a condition tree. In strict mode
// (ParseCondition) an invalid part is an error; in lenient mode it compiles
// to an unknown node.
type condCompiler struct {
	lenient bool
	// audiences are the saved conditions a {"$audience": key} term may
	// reference; nil means none.
	audiences Audiences
	// visiting is the chain of audiences being inlined, outermost first,
	// for cycle detection.
	visiting []string
	// inlined counts the audience references expanded so far.
	inlined int
	// root is the path of the condition's root in errors; "" means
	// conditionRoot.
	root string
}

// fail reports an invalid condition at path.
func (cc *condCompiler) fail(path, format string, args ...any) (condNode, error) {
	if cc.lenient {
		return constCond(unknown), nil
	}
	return nil, &ConditionError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// failValue reports an invalid operator at path.
func (cc *condCompiler) failValue(path, format string, args ...any) (valueNode, error) {
	if cc.lenient {
		return constValue(unknown), nil
	}
	return nil, &ConditionError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// sortedKeys returns m's keys in order, so that errors are deterministic.
func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// object compiles a condition object: logical operators and attribute
// paths, all of which must hold.
func (cc *condCompiler) object(m map[string]any, path string) (condNode, error) {
	nodes := make([]condNode, 0, len(m))
	for _, k := range sortedKeys(m) {
		n, err := cc.term(k, m[k], path+"."+k)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	if len(nodes) == 1 {
		return nodes[0], nil
	}
	byCost(nodes, condCost)
	return allCond(nodes), nil
}

// term compiles one key of a condition object.
func (cc *condCompiler) term(k string, v any, path string) (condNode, error) {
	switch k {
	case "$and", "$or", "$nor":
		arr, ok := v.([]any)
		if !ok {
			return cc.fail(path, "must be an array of conditions")
		}
		nodes := make([]condNode, 0, len(arr))
		for i, e := range arr {
			p := fmt.Sprintf("%s[%d]", path, i)
			m, ok := e.(map[string]any)
			var n condNode
			var err error
			if ok {
				n, err = cc.object(m, p)
			} else {
				n, err = cc.fail(p, "must be a condition object")
			}
			if err != nil {
				return nil, err
			}
			nodes = append(nodes, n)
		}
		byCost(nodes, condCost)
		switch k {
		case "$and":
			return allCond(nodes), nil
		case "$or":
			return anyCond(nodes), nil
		}
		return notCond{anyCond(nodes)}, nil
	case "$not":
		m, ok := v.(map[string]any)
		if !ok {
			return cc.fail(path, "must be a condition object")
		}
		n, err := cc.object(m, path)
		if err != nil {
			return nil, err
		}
		return notCond{n}, nil
	case "$savedGroup", "$savedGroups":
		return cc.fail(path, "saved groups are not supported yet")
	case AudienceOperator:
		return cc.audience(v, path)
	}
	if !cc.lenient && isValueOperator(k) {
		return cc.fail(path, "operator %s must be applied to an attribute", k)
	}
	match, err := cc.value(v, path)
	if err != nil {
		return nil, err
	}
	return &fieldCond{path: splitPath(k), match: match}, nil
}

// isOperatorObject reports whether every key of m is an operator. The
// empty object is an operator object with no operators: it matches
// everything.
func isOperatorObject(m map[string]any) bool {
	for k := range m {
		if !strings.HasPrefix(k, "$") {
			return false
		}
	}
	return true
}

// value compiles a condition on a value: a literal to compare with, or an
// object of operators that must all hold.
func (cc *condCompiler) value(v any, path string) (valueNode, error) {
	m, ok := v.(map[string]any)
	if !ok || !isOperatorObject(m) {
		return literal(v), nil
	}
	nodes := make([]valueNode, 0, len(m))
	for _, op := range sortedKeys(m) {
		n, err := cc.operator(op, m[op], path+"."+op)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	switch len(nodes) {
	case 0:
		return constValue(yes), nil
	case 1:
		return nodes[0], nil
	}
	byCost(nodes, valueCost)
	return allValue(nodes), nil
}

// literal compiles an implicit or $eq equality with v.
func literal(v any) valueNode {
	switch x := v.(type) {
	case nil:
		return eqNull{}
	case string:
		return eqString(x)
	case float64:
		return eqNumber(x)
	case bool:
		return eqBool(x)
	}
	return eqDeep{v}
}

// Terms of a conjunction or disjunction are evaluated cheapest first, so
// that a failing country check spares the regular expression beside it.
// Evaluation is pure and Kleene logic is commutative: the order never
// changes a result, only how soon it is known.

// condCost estimates the cost of evaluating a condition node.
func condCost(n condNode) int {
	switch x := n.(type) {
	case *fieldCond:
		return len(x.path) + valueCost(x.match)
	case allCond:
		return sumCost(len(x), func(i int) int { return condCost(x[i]) })
	case anyCond:
		return sumCost(len(x), func(i int) int { return condCost(x[i]) })
	case notCond:
		return condCost(x.inner)
	}
	return 1
}

// valueCost estimates the cost of evaluating a value node.
func valueCost(n valueNode) int {
	switch x := n.(type) {
	case regexMatch:
		return 50
	case *versionCmp:
		return 10
	case eqDeep:
		return 5
	case *inSet:
		return 2
	case sizeOf:
		return 5 + valueCost(x.inner)
	case notValue:
		return valueCost(x.inner)
	case allValue:
		return sumCost(len(x), func(i int) int { return valueCost(x[i]) })
	case allElems:
		return 10 * sumCost(len(x), func(i int) int { return valueCost(x[i]) })
	case elemMatchValue:
		return 10 * valueCost(x.inner)
	case elemMatchCond:
		return 10 * condCost(x.inner)
	}
	return 1
}

func sumCost(n int, cost func(i int) int) int {
	total := 1
	for i := range n {
		total += cost(i)
	}
	return total
}

// byCost sorts nodes cheapest first, keeping the order of equal costs.
func byCost[N any](nodes []N, cost func(N) int) {
	type costed struct {
		node N
		cost int
	}
	items := make([]costed, len(nodes))
	for i, n := range nodes {
		items[i] = costed{n, cost(n)}
	}
	slices.SortStableFunc(items, func(a, b costed) int { return cmp.Compare(a.cost, b.cost) })
	for i := range items {
		nodes[i] = items[i].node
	}
}
