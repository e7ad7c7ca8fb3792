package sdk_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports guards the SDK's edge: apps that embed it must not pull in
// the server's web framework, ORM, database drivers or packages.
func TestImports(t *testing.T) {
	if bad := forbiddenDeps(t, "github.com/flywheel-oss/flywheel/sdk"); len(bad) > 0 {
		t.Errorf("the SDK depends on forbidden packages:\n%s", strings.Join(bad, "\n"))
	}
	// The check itself works: the API server has every forbidden edge.
	if bad := forbiddenDeps(t, "github.com/flywheel-oss/flywheel/api"); len(bad) < 4 {
		t.Errorf("forbiddenDeps(api) = %q, want gin, gorm, pgx and store at least", bad)
	}
}

// forbiddenDeps returns the dependencies of pkg (go list -deps) that an
// app embedding the SDK must not get.
func forbiddenDeps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps %s listed %d packages, want its whole closure:\n%s", pkg, len(deps), out)
	}
	forbidden := []string{"gin-gonic", "gorm.io", "jackc/pgx", "lib/pq"}
	const module = "github.com/flywheel-oss/flywheel/"
	serverPkgs := []string{"api", "store", "ingest", "live", "internal"}
	var bad []string
	for _, dep := range deps {
		for _, f := range forbidden {
			if strings.Contains(dep, f) {
				bad = append(bad, dep)
			}
		}
		if rest, ok := strings.CutPrefix(dep, module); ok {
			for _, p := range serverPkgs {
				if rest == p || strings.HasPrefix(rest, p+"/") {
					bad = append(bad, dep)
				}
			}
		}
	}
	return bad
}
