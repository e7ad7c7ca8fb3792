package stats

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestPurity guards the package contract: non-test files import only the
// standard library's computational packages and gonum, declare no init
// functions and no package-level variables (no mutable state).
func TestPurity(t *testing.T) {
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	allowed := map[string]bool{"cmp": true, "math": true, "slices": true}
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
			path, _ := strconv.Unquote(imp.Path.Value)
			if !allowed[path] && !strings.HasPrefix(path, "gonum.org/v1/gonum/") {
				t.Errorf("%s imports %q; stats may import only math, cmp, slices and gonum", name, path)
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
	}
	if files < 10 {
		t.Fatalf("parsed only %d source files", files)
	}
}
