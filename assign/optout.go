package assign

import (
	"crypto/sha256"
	"encoding/binary"
)

// optOutTokenPrefix separates opt-out tokens from any other use of SHA-256
// over unit ids.
const optOutTokenPrefix = "flywheel-opt-out:"

// OptOutToken is how the server tells SDKs that a unit opted out without
// sending its id: the first 8 bytes (big-endian) of
//
//	SHA-256("flywheel-opt-out:" + unitType + ":" + unitID)
//
// over the raw id the app knows (never the server's pseudonymised form).
// Unit types hold no ":", so the input is unambiguous. The function is a
// contract shared with every SDK, pinned by TestOptOutToken. With 64 bits,
// a unit that did not opt out collides with one that did with a chance of
// about n/2^64 for n opt-outs.
func OptOutToken(unitType, unitID string) uint64 {
	var buf [len(optOutTokenPrefix) + 32 + 1 + 256]byte
	b := append(buf[:0], optOutTokenPrefix...)
	b = append(b, unitType...)
	b = append(b, ':')
	b = append(b, unitID...)
	sum := sha256.Sum256(b)
	return binary.BigEndian.Uint64(sum[:8])
}
