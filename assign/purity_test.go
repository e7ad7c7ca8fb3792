package assign

import (
	"testing"

	"github.com/flywheel-oss/flywheel/internal/puritytest"
)

// TestPurity guards the package contract: assign imports only the standard
// library's computational packages (no I/O, no network, no logging) and
// murmur3, reads no clock and holds no global state, so that the server and
// the SDK assign alike.
func TestPurity(t *testing.T) {
	puritytest.Check(t, 8, puritytest.AllowOnly(
		"bytes", "cmp", "crypto/sha256", "encoding/binary", "encoding/json", "errors", "fmt", "math", "math/bits", "reflect", "regexp",
		"slices", "sort", "strconv", "strings", "unicode", "unicode/utf8", "github.com/spaolacci/murmur3"))
}
