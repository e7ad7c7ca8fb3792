package analysis

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestPurity guards the package contract: non-test files import only
// package flywheel, stats and the standard library's computational
// packages (no I/O, no network, no logging), never read the clock, and
// declare no init function and no package-level variable.
func TestPurity(t *testing.T) {
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{
		"bytes": true, "encoding/json": true, "fmt": true, "math": true, "slices": true,
		"strconv": true, "strings": true, "time": true,
		"github.com/flywheel-oss/flywheel":       true,
		"github.com/flywheel-oss/flywheel/stats": true,
	}
	fset := token.NewFileSet()
	files := 0
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files++
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if !allowed[p] {
				t.Errorf("%s imports %q; analysis is pure", name, p)
			}
		}
		for _, decl := range f.Decls {
			switch d := decl.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil && d.Name.Name == "init" {
					t.Errorf("%s declares init()", name)
				}
			case *ast.GenDecl:
				if d.Tok == token.VAR {
					t.Errorf("%s:%d declares a package-level variable", name, fset.Position(d.Pos()).Line)
				}
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == "time" && (sel.Sel.Name == "Now" || sel.Sel.Name == "Since" || sel.Sel.Name == "Until") {
					t.Errorf("%s:%d reads the clock (time.%s)", name, fset.Position(sel.Pos()).Line, sel.Sel.Name)
				}
			}
			return true
		})
	}
	if files < 10 {
		t.Fatalf("parsed only %d source files", files)
	}
}
