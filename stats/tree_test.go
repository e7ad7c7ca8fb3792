package stats

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/flywheel-oss/flywheel/internal/statscases"
)

// sharedCases is the folder of the R reference cases, in the repository.
const sharedCases = statscases.Root

// computed is one value the package produced, keyed by its path in the
// reference JSON, with the expression that produced it for messages.
type computed struct {
	value any // float64, int64, string or bool
	expr  string
}

// results maps a slash-separated JSON path to the computed value.
type results map[string]computed

func (r results) set(path, expr string, v any) {
	if _, dup := r[path]; dup {
		panic("duplicate result path " + path)
	}
	r[path] = computed{value: v, expr: expr}
}

// readTree decodes a JSON file keeping numbers as json.Number, so integers
// stay exact and floats are parsed once with strconv.
func readTree(tb testing.TB, path string) map[string]any {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatalf("reference file missing: %v", err)
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.UseNumber()
	var tree map[string]any
	if err := dec.Decode(&tree); err != nil {
		tb.Fatalf("decode %s: %v", path, err)
	}
	return tree
}

// checkTree compares every leaf of the expected tree with got, and fails
// when a leaf has no computed counterpart, so that no reference number is
// skipped silently. Number objects ({"value", "rel_tol", "abs_tol"}) pass
// iff |got − value| ≤ max(abs_tol, rel_tol·|value|); a null value requires
// NaN. Integers, strings and booleans must match exactly. Bare floats (the
// informational cross-checks) use rel 1e-6, abs 1e-12. skip names the
// subtrees that are inputs or information, not results; it returns the
// number of leaves checked, and logs the tightest one.
func checkTree(t *testing.T, expected any, got results, skip func(path string) bool) int {
	t.Helper()
	checked, worst, worstPath := 0, 0.0, ""
	var walk func(node any, path string)
	walk = func(node any, path string) {
		if path != "" && skip(path) {
			return
		}
		if obj, ok := node.(map[string]any); ok {
			if _, isNumber := obj["value"]; !isNumber {
				for k, child := range obj {
					walk(child, strings.TrimPrefix(path+"/"+k, "/"))
				}
				return
			}
		}
		if arr, ok := node.([]any); ok {
			for i, child := range arr {
				walk(child, path+"/"+strconv.Itoa(i))
			}
			return
		}
		checked++
		c, ok := got[path]
		if !ok {
			t.Errorf("%s: no computed value for this reference leaf", path)
			return
		}
		if r := checkLeaf(t, path, node, c); r > worst {
			worst, worstPath = r, path
		}
	}
	walk(expected, "")
	t.Logf("checked %d reference values; the tightest, %s, used %.2g of its tolerance", checked, worstPath, worst)
	return checked
}

func checkLeaf(t *testing.T, path string, want any, c computed) (errorOverTol float64) {
	t.Helper()
	switch w := want.(type) {
	case map[string]any:
		g, ok := c.value.(float64)
		if !ok {
			t.Errorf("%s: %s is %T, want a float", path, c.expr, c.value)
			return 0
		}
		if w["value"] == nil {
			if !math.IsNaN(g) {
				t.Errorf("%s: %s = %v, want NaN (undefined: %v)", path, c.expr, g, w["reason"])
			}
			return 0
		}
		v, rel, abs := number(t, path, w["value"]), number(t, path, w["rel_tol"]), number(t, path, w["abs_tol"])
		tol := math.Max(abs, rel*math.Abs(v))
		if !(math.Abs(g-v) <= tol) {
			t.Errorf("%s: %s = %.17g, want %.17g (±%.3g, off by %.3g)", path, c.expr, g, v, tol, math.Abs(g-v))
		}
		return math.Abs(g-v) / tol
	case json.Number:
		// An integer literal is a count unless the value it stands for is a
		// float (JSON writers drop the ".0" of 2.0).
		if i, err := strconv.ParseInt(string(w), 10, 64); err == nil && !isFloat(c.value) {
			if g, ok := c.value.(int64); !ok || g != i {
				t.Errorf("%s: %s = %v (%T), want %d exactly", path, c.expr, c.value, c.value, i)
			}
			return 0
		}
		v := number(t, path, w)
		g, ok := c.value.(float64)
		tol := math.Max(1e-12, 1e-6*math.Abs(v))
		if !ok || !(math.Abs(g-v) <= tol) {
			t.Errorf("%s: %s = %v, want %.17g (±%.3g)", path, c.expr, c.value, v, tol)
		}
		return math.Abs(g-v) / tol
	case string, bool:
		if c.value != w {
			t.Errorf("%s: %s = %v, want %v", path, c.expr, c.value, w)
		}
	default:
		t.Errorf("%s: unexpected reference leaf %v (%T)", path, want, want)
	}
	return 0
}

func number(tb testing.TB, path string, v any) float64 {
	tb.Helper()
	n, ok := v.(json.Number)
	if !ok {
		tb.Fatalf("%s: %v (%T) is not a number", path, v, v)
	}
	f, err := n.Float64()
	if err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	return f
}

// skipKeys returns a skip function for checkTree that skips every path
// whose last element is one of keys.
func skipKeys(keys ...string) func(string) bool {
	return func(path string) bool {
		last := path[strings.LastIndex(path, "/")+1:]
		for _, k := range keys {
			if last == k {
				return true
			}
		}
		return false
	}
}

// caseDirs lists the reference case folders; their absence is a failure.
func caseDirs(tb testing.TB) []string {
	tb.Helper()
	dirs, err := filepath.Glob(filepath.Join(sharedCases, "*", "expected.json"))
	if err != nil || len(dirs) == 0 {
		tb.Fatalf("no reference cases under %s (shared/ must sit beside the repository): %v", sharedCases, err)
	}
	for i, d := range dirs {
		dirs[i] = filepath.Dir(d)
	}
	return dirs
}

func isFloat(v any) bool {
	_, ok := v.(float64)
	return ok
}
