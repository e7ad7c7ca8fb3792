package assign

import (
	"regexp"
	"strings"
)

// valueNode is a condition on one value (an attribute, an array element, an
// array's size). A missing attribute is passed as nil, like null.
type valueNode interface {
	eval(v any) tri
}

// constValue is a value condition with a fixed result.
type constValue tri

func (c constValue) eval(any) tri { return tri(c) }

// allValue is an object of several operators, all of which must hold.
type allValue []valueNode

func (a allValue) eval(v any) tri {
	out := yes
	for _, n := range a {
		switch n.eval(v) {
		case no:
			return no
		case unknown:
			out = unknown
		}
	}
	return out
}

// notValue is $not (and $ne of an equality).
type notValue struct{ inner valueNode }

func (n notValue) eval(v any) tri { return n.inner.eval(v).not() }

// Equalities are strictly typed: "5" never equals 5, and null equals only
// null or a missing attribute.
type (
	eqNull   struct{}
	eqString string
	eqNumber float64
	eqBool   bool
	eqDeep   struct{ want any } // arrays and objects, compared structurally
	eqFold   string             // $alli item: case-insensitive string equality
)

func (eqNull) eval(v any) tri { return triOf(v == nil) }

func (e eqString) eval(v any) tri {
	s, ok := v.(string)
	return triOf(ok && s == string(e))
}

func (e eqNumber) eval(v any) tri {
	f, ok := asNumber(v)
	return triOf(ok && f == float64(e))
}

func (e eqBool) eval(v any) tri {
	b, ok := v.(bool)
	return triOf(ok && b == bool(e))
}

func (e eqDeep) eval(v any) tri { return triOf(deepEqual(v, e.want)) }

func (e eqFold) eval(v any) tri {
	s, ok := v.(string)
	return triOf(ok && equalFold(s, string(e)))
}

// cmpOp is an ordering operator.
type cmpOp uint8

const (
	cmpLT cmpOp = iota
	cmpLE
	cmpGT
	cmpGE
)

// holds reports whether c, the sign of actual minus wanted, satisfies op.
func (op cmpOp) holds(c int) bool {
	switch op {
	case cmpLT:
		return c < 0
	case cmpLE:
		return c <= 0
	case cmpGT:
		return c > 0
	}
	return c >= 0
}

// cmpNumber orders numbers against a number; other types never match.
type cmpNumber struct {
	op   cmpOp
	want float64
}

func (n cmpNumber) eval(v any) tri {
	f, ok := asNumber(v)
	if !ok || f != f {
		return no
	}
	switch {
	case f < n.want:
		return triOf(n.op.holds(-1))
	case f > n.want:
		return triOf(n.op.holds(1))
	}
	return triOf(n.op.holds(0))
}

// cmpString orders strings lexicographically against a string (so "10" <
// "9", and ISO dates order correctly); other types never match.
type cmpString struct {
	op   cmpOp
	want string
}

func (n cmpString) eval(v any) tri {
	s, ok := v.(string)
	return triOf(ok && n.op.holds(strings.Compare(s, n.want)))
}

// inSet is $in, $nin, $ini and $nini. An array attribute is in the set when
// any of its elements is.
type inSet struct {
	set    *valueSet
	negate bool
}

func (n *inSet) eval(v any) tri {
	in := false
	if arr, ok := v.([]any); ok {
		for _, e := range arr {
			if n.set.contains(e) {
				in = true
				break
			}
		}
	} else {
		in = n.set.contains(v)
	}
	return triOf(in != n.negate)
}

// exists is $exists: null and missing attributes do not exist.
type exists bool

func (e exists) eval(v any) tri { return triOf((v != nil) == bool(e)) }

// typeIs is $type.
type typeIs string

func (t typeIs) eval(v any) tri { return triOf(typeName(v) == string(t)) }

// regexMatch is $regex and $regexi (compiled once, RE2 syntax); only
// strings match.
type regexMatch struct{ re *regexp.Regexp }

func (r regexMatch) eval(v any) tri {
	s, ok := v.(string)
	return triOf(ok && r.re.MatchString(s))
}

// sizeOf is $size: the condition applies to an array's length.
type sizeOf struct{ inner valueNode }

func (s sizeOf) eval(v any) tri {
	arr, ok := v.([]any)
	if !ok {
		return no
	}
	return s.inner.eval(float64(len(arr)))
}

// elemMatchValue is $elemMatch with value operators: some element matches.
type elemMatchValue struct{ inner valueNode }

func (m elemMatchValue) eval(v any) tri { return someElement(v, m.inner.eval) }

// elemMatchCond is $elemMatch with a condition on each element's fields.
type elemMatchCond struct{ inner condNode }

func (m elemMatchCond) eval(v any) tri { return someElement(v, m.inner.eval) }

// someElement is yes if match is yes for some element of the array v, no
// if v is not an array or match is no for every element, else unknown. It
// does not allocate (TestElemMatchDoesNotAllocate).
func someElement(v any, match func(any) tri) tri {
	arr, ok := v.([]any)
	if !ok {
		return no
	}
	out := no
	for _, e := range arr {
		switch match(e) {
		case yes:
			return yes
		case unknown:
			out = unknown
		}
	}
	return out
}

// allElems is $all and $alli: every item matches some element.
type allElems []valueNode

func (a allElems) eval(v any) tri {
	arr, ok := v.([]any)
	if !ok {
		return no
	}
	out := yes
	for _, item := range a {
		found := no
		for _, e := range arr {
			r := item.eval(e)
			if r == yes {
				found = yes
				break
			}
			if r == unknown {
				found = unknown
			}
		}
		switch found {
		case no:
			return no
		case unknown:
			out = unknown
		}
	}
	return out
}
