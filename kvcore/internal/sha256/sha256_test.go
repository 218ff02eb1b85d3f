package sha256

import (
	stdsha "crypto/sha256"
	"math/rand/v2"
	"testing"
)

// TestSum256 compares Sum256 with crypto/sha256 on random inputs of every
// length up to 300 bytes (all padding cases) and a few large ones.
func TestSum256(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	lens := []int{1 << 16, 1<<20 + 3}
	for n := 0; n <= 300; n++ {
		lens = append(lens, n)
	}
	for _, n := range lens {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if got, want := Sum256(b), stdsha.Sum256(b); got != want {
			t.Fatalf("len %d: Sum256 = %x, crypto/sha256 = %x", n, got, want)
		}
	}
	// FIPS 180-4's "abc" example.
	if got := Sum256([]byte("abc")); got[0] != 0xba || got[31] != 0xad {
		t.Fatalf("abc: %x", got)
	}
}
