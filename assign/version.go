package assign

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// versionOp is a version comparison operator.
type versionOp uint8

const (
	vEQ versionOp = iota
	vNE
	vGT
	vGE
	vLT
	vLE
)

// versionOpOf maps an operator name to its versionOp.
func versionOpOf(op string) versionOp {
	switch op {
	case "$vne":
		return vNE
	case "$vgt":
		return vGT
	case "$vgte":
		return vGE
	case "$vlt":
		return vLT
	case "$vlte":
		return vLE
	}
	return vEQ
}

// versionKind is the JSON type of a version operand. Versions compare only
// with a value of the same type: a string attribute with a string operand,
// a number with a number.
type versionKind uint8

const (
	versionOfNone versionKind = iota
	versionOfString
	versionOfNumber
)

// versionCmp is $veq, $vne, $vgt, $vgte, $vlt and $vlte. Both sides are
// turned into GrowthBook's padded version strings and compared as strings.
// A value of another type than the operand is no version: only $vne
// matches it.
type versionCmp struct {
	op   versionOp
	kind versionKind
	want []byte // padded operand
}

func (n *versionCmp) eval(v any) tri {
	var buf [64]byte
	var got []byte
	switch n.kind {
	case versionOfString:
		s, ok := v.(string)
		if !ok {
			return triOf(n.op == vNE)
		}
		got = appendPaddedVersion(buf[:0], s)
	case versionOfNumber:
		f, ok := asNumber(v)
		if !ok {
			return triOf(n.op == vNE)
		}
		got = appendPaddedVersion(buf[:0], jsNumberString(f))
	default:
		return triOf(n.op == vNE)
	}
	c := bytes.Compare(got, n.want)
	switch n.op {
	case vEQ:
		return triOf(c == 0)
	case vNE:
		return triOf(c != 0)
	case vGT:
		return triOf(c > 0)
	case vGE:
		return triOf(c >= 0)
	case vLT:
		return triOf(c < 0)
	}
	return triOf(c <= 0)
}

// appendPaddedVersion appends GrowthBook's paddedVersionString of s to dst:
//
//   - "" is "0";
//   - a leading "v" and build metadata ("+" to the end, as JavaScript's
//     /\+.*$/ finds it) are removed;
//   - the rest is split at "-" and ".";
//   - exactly three parts (a release) get a fourth part "~", which sorts
//     after any pre-release tag;
//   - parts made only of ASCII digits are left-padded with spaces to 5
//     characters (longer ones are kept whole);
//   - parts are joined with "-".
//
// Comparing two padded strings bytewise then orders versions.
func appendPaddedVersion(dst []byte, s string) []byte {
	if s == "" {
		s = "0"
	}
	s = strings.TrimPrefix(s, "v")
	s = trimBuildMetadata(s)
	parts := 1 + strings.Count(s, "-") + strings.Count(s, ".")
	for i := 0; ; i++ {
		j := strings.IndexAny(s, "-.")
		part := s
		if j >= 0 {
			part = s[:j]
		}
		if i > 0 {
			dst = append(dst, '-')
		}
		if isASCIIDigits(part) {
			for k := len(part); k < 5; k++ {
				dst = append(dst, ' ')
			}
		}
		dst = append(dst, part...)
		if j < 0 {
			break
		}
		s = s[j+1:]
	}
	if parts == 3 {
		dst = append(dst, '-', '~')
	}
	return dst
}

// trimBuildMetadata removes the first "+" and what follows, provided no
// line terminator follows it (JavaScript's "." does not match one).
func trimBuildMetadata(s string) string {
	start := 0
	for i, r := range s {
		if r == '\n' || r == '\r' || r == '\u2028' || r == '\u2029' {
			start = i + utf8.RuneLen(r)
		}
	}
	if j := strings.IndexByte(s[start:], '+'); j >= 0 {
		return s[:start+j]
	}
	return s
}

func isASCIIDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// jsNumberString formats f as JavaScript's String(number) does.
func jsNumberString(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case f == 0:
		return "0"
	}
	if a := math.Abs(f); a >= 1e-6 && a < 1e21 {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	s := strconv.FormatFloat(f, 'e', -1, 64) // like 1.5e-07 or 1e+21
	i := strings.IndexByte(s, 'e')
	mant, exp := s[:i], s[i+2:]
	exp = strings.TrimLeft(exp, "0")
	return mant + "e" + s[i+1:i+2] + exp
}
