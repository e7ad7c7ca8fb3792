//go:build race

package assign

import "github.com/spaolacci/murmur3"

// libSum32 is the reference library's MurmurHash3 x86_32. Under -race it
// uses the streaming digest: murmur3.Sum32WithSeed's unsafe pointer
// arithmetic aborts race-enabled binaries (checkptr, spaolacci/murmur3#34).
func libSum32(seed uint32, data []byte) uint32 {
	h := murmur3.New32WithSeed(seed)
	h.Write(data)
	return h.Sum32()
}

// raceEnabled reports whether the race detector is on.
const raceEnabled = true
