// Package assign is Flywheel's deterministic assignment engine: the hash and
// bucket function, layers, traffic, variant ranges, targeting conditions
// (GrowthBook's condition language, spec 0.12.0) and the compiled, immutable
// Snapshot that the server and the Go SDK both assign from.
//
// The package is pure. It imports only the standard library (its tests also
// use github.com/spaolacci/murmur3 and go-cmp); it performs no I/O, reads no
// clock, keeps no mutable package-level state, has no init side effects and
// never logs. Errors are returned as values.
//
// The assignment algorithm is a cross-SDK contract (docs/api.md, "Assignment"):
//
//	h(s)      = MurmurHash3_x86_32(utf8(s), seed 0)
//	bucket(s) = (uint64(h(s)) * 10000) >> 32            in [0, 10000)
//	order     = not running -> override -> targeting -> layer -> traffic/variant
//	layer     = eligible iff bucket("layer:" + layer + ":" + unitID) in [from, to)
//	variant i = [start_i, end_i) of bucket(salt + ":" + unitID), where
//	            start_i = floor(10000*C_i + 1e-6)
//	            end_i   = start_i + floor(10000*traffic*w_i + 1e-6)
//	            C_i     = sum of the weights before variant i
//
// testdata/vectors.json pins it, including hashes near 2^32; every SDK must
// pass that file unchanged.
package assign

import "math/bits"

// Buckets is the number of buckets a hash is mapped to. Bucket values are in
// [0, Buckets).
const Buckets = 10000

// MurmurHash3 x86_32 constants (Austin Appleby, SMHasher).
const (
	murmurC1 = 0xcc9e2d51
	murmurC2 = 0x1b873593
)

// Hash returns MurmurHash3 x86_32 with seed 0 of the bytes of s (the UTF-8
// encoding of the text). The function is a contract shared with every SDK:
// it is pinned by testdata/murmur3-vectors.json and by
// testdata/vectors.json.
//
// The algorithm is implemented here rather than by calling
// github.com/spaolacci/murmur3.Sum32, whose unsafe pointer arithmetic aborts
// programs built with -race (checkptr), and so that the experiment's
// "salt:" prefix can be hashed ahead of time and the unit id streamed after
// it without building the concatenated string. Tests check both against the
// library and the published vectors.
func Hash(s string) uint32 {
	var h hasher
	h.write(s)
	return h.sum()
}

// BucketOf maps a hash to a bucket in [0, Buckets) by integer multiply and
// shift: floor(h * 10000 / 2^32). It never uses floating point.
func BucketOf(h uint32) int {
	return int((uint64(h) * Buckets) >> 32)
}

// Bucket returns BucketOf(Hash(s)).
func Bucket(s string) int {
	return BucketOf(Hash(s))
}

// hashWithSeed returns MurmurHash3 x86_32 of s with the given seed.
func hashWithSeed(seed uint32, s string) uint32 {
	h := hasher{h1: seed}
	h.write(s)
	return h.sum()
}

// hasher is an incremental MurmurHash3 x86_32 state. Its zero value is the
// state for seed 0 before any input. It is a small value type: copying it
// forks the hash, which is how a precomputed prefix state is reused for every
// unit id without allocating.
type hasher struct {
	h1    uint32 // running hash over the complete 4-byte blocks seen so far
	tail  uint32 // pending bytes of an incomplete block, little endian
	ntail uint32 // number of pending bytes, 0..3
	n     uint32 // total input length, modulo 2^32 as the algorithm uses it
}

// write appends s to the hashed input.
func (h *hasher) write(s string) {
	h.n += uint32(len(s))
	if h.ntail > 0 {
		for h.ntail < 4 && len(s) > 0 {
			h.tail |= uint32(s[0]) << (8 * h.ntail)
			h.ntail++
			s = s[1:]
		}
		if h.ntail < 4 {
			return
		}
		h.h1 = murmurBlock(h.h1, h.tail)
		h.tail, h.ntail = 0, 0
	}
	for len(s) >= 4 {
		k := uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
		h.h1 = murmurBlock(h.h1, k)
		s = s[4:]
	}
	for i := 0; i < len(s); i++ {
		h.tail |= uint32(s[i]) << (8 * h.ntail)
		h.ntail++
	}
}

// sum returns the hash of everything written so far. It does not modify h.
func (h *hasher) sum() uint32 {
	h1 := h.h1
	if h.ntail > 0 {
		k := h.tail * murmurC1
		k = bits.RotateLeft32(k, 15)
		k *= murmurC2
		h1 ^= k
	}
	h1 ^= h.n
	h1 ^= h1 >> 16
	h1 *= 0x85ebca6b
	h1 ^= h1 >> 13
	h1 *= 0xc2b2ae35
	h1 ^= h1 >> 16
	return h1
}

// murmurBlock mixes one little-endian 4-byte block k into h1.
func murmurBlock(h1, k uint32) uint32 {
	k *= murmurC1
	k = bits.RotateLeft32(k, 15)
	k *= murmurC2
	h1 ^= k
	h1 = bits.RotateLeft32(h1, 13)
	return h1*5 + 0xe6546b64
}

// prefixHasher returns the hasher state after writing prefix, so that
// hashing prefix+id costs only the id's bytes.
func prefixHasher(prefix string) hasher {
	var h hasher
	h.write(prefix)
	return h
}

// bucketAfter returns the bucket of prefix+id, where h is the state after
// the prefix (see prefixHasher). h is copied, never modified.
func bucketAfter(h hasher, id string) int {
	h.write(id)
	return BucketOf(h.sum())
}
