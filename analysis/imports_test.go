package analysis

import (
	"testing"

	"github.com/flywheel-oss/flywheel/internal/puritytest"
)

// TestPurity guards the package contract: analysis imports only package
// flywheel, stats and the standard library's computational packages (no
// I/O, no network, no logging), reads no clock and holds no global state.
func TestPurity(t *testing.T) {
	puritytest.Check(t, 5, puritytest.AllowOnly(
		"bytes", "encoding/json", "fmt", "math", "slices", "strconv", "strings", "time",
		"github.com/flywheel-oss/flywheel", "github.com/flywheel-oss/flywheel/stats"))
}
