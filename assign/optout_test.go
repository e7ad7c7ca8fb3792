package assign

import (
	"crypto/sha256"
	"encoding/binary"
	"strings"
	"testing"
)

func TestOptOutToken(t *testing.T) {
	// Pinned values, computed outside Go so that other SDKs can check
	// against them: printf 'flywheel-opt-out:customer:c-42' | sha256sum | cut -c1-16
	for _, tt := range []struct {
		unitType, unitID string
		want             uint64
	}{
		{"customer", "c-42", 0x12df7ef81d3b3a09},
		{"device", "d-9", 0x7fa3a5b5b7097130},
	} {
		if got := OptOutToken(tt.unitType, tt.unitID); got != tt.want {
			t.Errorf("OptOutToken(%q, %q) = %016x, want %016x", tt.unitType, tt.unitID, got, tt.want)
		}
	}
	// Past the stack buffer (a 256-byte id with a long unit type) the
	// token is still the SHA-256 prefix.
	long := strings.Repeat("é", 200)
	sum := sha256.Sum256([]byte("flywheel-opt-out:" + strings.Repeat("t", 32) + ":" + long))
	if got, want := OptOutToken(strings.Repeat("t", 32), long), binary.BigEndian.Uint64(sum[:8]); got != want {
		t.Errorf("OptOutToken of a 400-byte id = %016x, want %016x", got, want)
	}
	if OptOutToken("customer", "c-42") == OptOutToken("device", "c-42") {
		t.Error("the unit type is not part of the token")
	}
	if n := testing.AllocsPerRun(100, func() { OptOutToken("customer", "c-0012345678") }); n != 0 {
		t.Errorf("OptOutToken allocates %v times, want 0", n)
	}
}
