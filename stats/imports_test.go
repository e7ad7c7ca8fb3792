package stats

import (
	"testing"

	"github.com/flywheel-oss/flywheel/internal/puritytest"
)

// TestPurity guards the package contract: stats imports only the standard
// library's computational packages and gonum, reads no clock and holds no
// global state.
func TestPurity(t *testing.T) {
	puritytest.Check(t, 10, puritytest.AllowOnly("cmp", "math", "slices", "gonum.org/v1/gonum/"))
}
