//go:build !race

package assign

import "github.com/spaolacci/murmur3"

// libSum32 is the reference library's MurmurHash3 x86_32.
func libSum32(seed uint32, data []byte) uint32 {
	return murmur3.Sum32WithSeed(data, seed)
}

// raceEnabled reports whether the race detector is on.
const raceEnabled = false
