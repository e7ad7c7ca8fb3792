package assign

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"os"
	"testing"
)

// murmurVectorsFile holds 118 published MurmurHash3 x86_32 vectors.
const murmurVectorsFile = "testdata/murmur3-vectors.json"

type murmurVectors struct {
	Count    int `json:"count"`
	SMHasher struct {
		ExpectedUint32 uint32 `json:"expected_uint32"`
	} `json:"smhasher_verification"`
	Vectors []struct {
		InputHex string `json:"input_hex"`
		InputLen int    `json:"input_len"`
		Seed     uint32 `json:"seed"`
		Hash     uint32 `json:"hash_uint32"`
	} `json:"vectors"`
}

func loadMurmurVectors(tb testing.TB) murmurVectors {
	tb.Helper()
	data, err := os.ReadFile(murmurVectorsFile)
	if err != nil {
		tb.Fatalf("read murmur3 vectors: %v", err)
	}
	var v murmurVectors
	if err := json.Unmarshal(data, &v); err != nil {
		tb.Fatalf("decode %s: %v", murmurVectorsFile, err)
	}
	if len(v.Vectors) != v.Count || v.Count != 118 {
		tb.Fatalf("%s: %d vectors, count %d, want 118", murmurVectorsFile, len(v.Vectors), v.Count)
	}
	return v
}

func TestMurmur3Vectors(t *testing.T) {
	v := loadMurmurVectors(t)
	for i, vec := range v.Vectors {
		in, err := hex.DecodeString(vec.InputHex)
		if err != nil || len(in) != vec.InputLen {
			t.Fatalf("vector %d: bad input_hex %q (len %d): %v", i, vec.InputHex, vec.InputLen, err)
		}
		if got := hashWithSeed(vec.Seed, string(in)); got != vec.Hash {
			t.Errorf("vector %d: hashWithSeed(%d, %x) = %d, want %d", i, vec.Seed, in, got, vec.Hash)
		}
		if got := libSum32(vec.Seed, in); got != vec.Hash {
			t.Errorf("vector %d: murmur3(%d, %x) = %d, want %d", i, vec.Seed, in, got, vec.Hash)
		}
		if vec.Seed == 0 {
			if got := Hash(string(in)); got != vec.Hash {
				t.Errorf("vector %d: Hash(%q) = %d, want %d", i, in, got, vec.Hash)
			}
		}
	}
}

// TestMurmur3SMHasherVerification runs SMHasher's VerificationTest: hash
// key[0:i] with seed 256-i for i in 0..255, then hash the 1024 bytes of
// results with seed 0.
func TestMurmur3SMHasherVerification(t *testing.T) {
	v := loadMurmurVectors(t)
	key := make([]byte, 256)
	hashes := make([]byte, 1024)
	for i := range 256 {
		key[i] = byte(i)
		binary.LittleEndian.PutUint32(hashes[4*i:], hashWithSeed(uint32(256-i), string(key[:i])))
	}
	if got, want := hashWithSeed(0, string(hashes)), v.SMHasher.ExpectedUint32; got != want {
		t.Errorf("SMHasher verification = %#08x, want %#08x", got, want)
	}
}

// TestHashMatchesLibrary compares Hash with the reference library on random
// inputs of every length up to 300 bytes.
func TestHashMatchesLibrary(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 300)
	for n := range len(buf) + 1 {
		for range 5 {
			for i := range n {
				buf[i] = byte(r.Uint32())
			}
			in := buf[:n]
			if got, want := Hash(string(in)), libSum32(0, in); got != want {
				t.Fatalf("Hash(%x) = %d, want %d", in, got, want)
			}
		}
	}
}

// TestHasherStreaming checks that hashing a prefix and then the rest, split
// anywhere, equals hashing the whole input.
func TestHasherStreaming(t *testing.T) {
	inputs := []string{"", "a", "ab", "abc", "abcd", "checkout-button:user-42", "layer:home:ünïcödé-✓", "0123456789abcdefghij"}
	for _, s := range inputs {
		want := Hash(s)
		for i := 0; i <= len(s); i++ {
			for j := i; j <= len(s); j++ {
				var h hasher
				h.write(s[:i])
				h.write(s[i:j])
				h.write(s[j:])
				if got := h.sum(); got != want {
					t.Errorf("streamed Hash(%q) split at %d,%d = %d, want %d", s, i, j, got, want)
				}
			}
			if got := BucketOf(want); bucketAfter(prefixHasher(s[:i]), s[i:]) != got {
				t.Errorf("bucketAfter(%q, %q) != Bucket(%q) = %d", s[:i], s[i:], s, got)
			}
		}
	}
}

func TestBucketOf(t *testing.T) {
	tests := []struct {
		h    uint32
		want int
	}{
		{0, 0},
		{1, 0},
		{429496, 0},     // floor(429496 * 10000 / 2^32) = 0.99999...
		{429497, 1},     // first hash of bucket 1
		{1 << 31, 5000}, // exactly half
		{1<<31 - 1, 4999},
		{0xFFFFFFFF, 9999},
		{0xFFFF0000, 9999},
		{0xFFF97247, 9998}, // the last hash of bucket 9998
		{0xFFF97248, 9999}, // the first hash of bucket 9999
	}
	for _, tt := range tests {
		if got := BucketOf(tt.h); got != tt.want {
			t.Errorf("BucketOf(%#x) = %d, want %d", tt.h, got, tt.want)
		}
	}
}

func TestBucket(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"", 0},
		{"hello", BucketOf(613153351)},
		{"hello, world", BucketOf(345750399)},
	}
	for _, tt := range tests {
		if got := Bucket(tt.in); got != tt.want {
			t.Errorf("Bucket(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}
