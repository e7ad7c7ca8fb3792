// Package puritytest checks, from a package's own tests, that its non-test
// source is pure: it imports only what the caller allows, never reads the
// clock, and declares no init function and no package-level variable (so
// no global state). assign, stats and analysis use it.
package puritytest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Check parses every non-test .go file of the current directory (a test's
// package) and reports each import allowed rejects, each clock read
// (time.Now, time.Since, time.Until), each init function and each
// package-level var. It fails when it finds fewer than minFiles files, so
// that it cannot pass by reading nothing.
func Check(t *testing.T, minFiles int, allowed func(importPath string) bool) {
	t.Helper()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
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
			if p, _ := strconv.Unquote(imp.Path.Value); !allowed(p) {
				t.Errorf("%s imports %q, which this pure package must not", name, p)
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
	if files < minFiles {
		t.Fatalf("parsed only %d source files, want at least %d", files, minFiles)
	}
}

// AllowOnly returns an allow function for exactly the given import paths
// and every path under the given prefixes (ending in "/").
func AllowOnly(paths ...string) func(string) bool {
	return func(p string) bool {
		for _, a := range paths {
			if p == a || (strings.HasSuffix(a, "/") && strings.HasPrefix(p, a)) {
				return true
			}
		}
		return false
	}
}
