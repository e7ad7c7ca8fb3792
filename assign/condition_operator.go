package assign

import (
	"fmt"
	"regexp"
)

// isValueOperator reports whether op is an operator on a value.
func isValueOperator(op string) bool {
	switch op {
	case "$eq", "$ne", "$lt", "$lte", "$gt", "$gte",
		"$in", "$nin", "$ini", "$nini", "$all", "$alli",
		"$elemMatch", "$size", "$exists", "$type", "$regex", "$regexi",
		"$veq", "$vne", "$vgt", "$vgte", "$vlt", "$vlte",
		"$inGroup", "$notInGroup":
		return true
	}
	return false
}

// operator compiles one operator applied to a value.
func (cc *condCompiler) operator(op string, arg any, path string) (valueNode, error) {
	switch op {
	case "$eq":
		return literal(arg), nil
	case "$ne":
		return notValue{literal(arg)}, nil
	case "$not":
		n, err := cc.value(arg, path)
		if err != nil {
			return nil, err
		}
		return notValue{n}, nil
	case "$lt", "$lte", "$gt", "$gte":
		return cc.compare(op, arg, path)
	case "$veq", "$vne", "$vgt", "$vgte", "$vlt", "$vlte":
		return cc.version(op, arg, path)
	case "$in", "$nin", "$ini", "$nini":
		arr, ok := arg.([]any)
		if !ok {
			return cc.failValue(path, "must be an array")
		}
		fold := op == "$ini" || op == "$nini"
		negate := op == "$nin" || op == "$nini"
		return &inSet{set: newValueSet(arr, fold), negate: negate}, nil
	case "$all", "$alli":
		return cc.all(op == "$alli", arg, path)
	case "$elemMatch":
		return cc.elemMatch(arg, path)
	case "$size":
		if _, num := arg.(float64); !num && !cc.lenient {
			if m, obj := arg.(map[string]any); !obj || len(m) == 0 || !isOperatorObject(m) {
				return cc.failValue(path, "must be a number or an object of operators")
			}
		}
		n, err := cc.value(arg, path)
		if err != nil {
			return nil, err
		}
		return sizeOf{n}, nil
	case "$exists":
		b, ok := arg.(bool)
		if !ok && !cc.lenient {
			return cc.failValue(path, "must be true or false")
		}
		if !ok {
			b = truthy(arg)
		}
		return exists(b), nil
	case "$type":
		s, ok := arg.(string)
		if !ok {
			return cc.failValue(path, "must be a type name")
		}
		if !knownTypeName(s) && !cc.lenient {
			return cc.failValue(path, "unknown type %q (want string, number, boolean, object, array, null or undefined)", s)
		}
		return typeIs(s), nil
	case "$regex", "$regexi":
		s, ok := arg.(string)
		if !ok {
			return cc.failValue(path, "must be a regular expression string")
		}
		if op == "$regexi" {
			s = "(?i)" + s
		}
		re, err := regexp.Compile(s)
		if err != nil {
			return cc.failValue(path, "invalid regular expression (RE2 syntax): %v", err)
		}
		return regexMatch{re}, nil
	case "$and", "$or", "$nor":
		if cc.lenient {
			return constValue(no), nil
		}
		return cc.failValue(path, "%s combines conditions and cannot be applied to an attribute's value", op)
	case "$inGroup", "$notInGroup", "$savedGroup":
		return cc.failValue(path, "saved groups are not supported yet")
	}
	return cc.failValue(path, "unknown operator %s", op)
}

// compare compiles $lt, $lte, $gt, $gte: numbers compare with numbers,
// strings with strings; anything else never matches.
func (cc *condCompiler) compare(op string, arg any, path string) (valueNode, error) {
	var c cmpOp
	switch op {
	case "$lt":
		c = cmpLT
	case "$lte":
		c = cmpLE
	case "$gt":
		c = cmpGT
	default:
		c = cmpGE
	}
	switch x := arg.(type) {
	case float64:
		return cmpNumber{op: c, want: x}, nil
	case string:
		return cmpString{op: c, want: x}, nil
	}
	if cc.lenient {
		return constValue(no), nil
	}
	return cc.failValue(path, "must be a number or a string")
}

// version compiles the version operators.
func (cc *condCompiler) version(op string, arg any, path string) (valueNode, error) {
	n := &versionCmp{op: versionOpOf(op)}
	switch x := arg.(type) {
	case string:
		n.kind = versionOfString
		n.want = appendPaddedVersion(nil, x)
	case float64:
		n.kind = versionOfNumber
		n.want = appendPaddedVersion(nil, jsNumberString(x))
	default:
		if !cc.lenient {
			return cc.failValue(path, "must be a version string")
		}
	}
	return n, nil
}

// all compiles $all and $alli: every item must match some element.
func (cc *condCompiler) all(fold bool, arg any, path string) (valueNode, error) {
	arr, ok := arg.([]any)
	if !ok {
		return cc.failValue(path, "must be an array")
	}
	items := make([]valueNode, 0, len(arr))
	for i, e := range arr {
		if s, ok := e.(string); ok && fold {
			items = append(items, eqFold(s))
			continue
		}
		n, err := cc.value(e, fmt.Sprintf("%s[%d]", path, i))
		if err != nil {
			return nil, err
		}
		items = append(items, n)
	}
	return allElems(items), nil
}

// elemMatch compiles $elemMatch. An object of value operators tests each
// element as a value; anything else (attribute paths, or the logical
// operators $and, $or, $nor) is a condition on each element as an object.
func (cc *condCompiler) elemMatch(arg any, path string) (valueNode, error) {
	m, ok := arg.(map[string]any)
	if !ok {
		return cc.failValue(path, "must be an object")
	}
	_, and := m["$and"]
	_, or := m["$or"]
	_, nor := m["$nor"]
	_, aud := m[AudienceOperator] // a condition on the element, as $and
	if len(m) > 0 && isOperatorObject(m) && !and && !or && !nor && !aud {
		n, err := cc.value(m, path)
		if err != nil {
			return nil, err
		}
		return elemMatchValue{n}, nil
	}
	var n condNode = allCond(nil)
	if len(m) > 0 {
		var err error
		if n, err = cc.object(m, path); err != nil {
			return nil, err
		}
	}
	return elemMatchCond{n}, nil
}

// knownTypeName reports whether s is a $type GrowthBook knows. "undefined"
// never matches here: a missing attribute is null.
func knownTypeName(s string) bool {
	switch s {
	case "string", "number", "boolean", "object", "array", "null", "undefined":
		return true
	}
	return false
}

// truthy is JavaScript truthiness of a JSON value.
func truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case float64:
		return x != 0
	case string:
		return x != ""
	}
	return true
}
