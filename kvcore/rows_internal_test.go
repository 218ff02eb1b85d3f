package kvcore

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestUniqueRows: row lists are sorted and deduplicated as ints (the
// browser runtime links no uint32 sort), on random lists with repeats.
func TestUniqueRows(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	for range 200 {
		n, max := rng.IntN(50), 1+rng.IntN(40)
		rows := make([]int, n)
		want := make([]uint32, n)
		for i := range rows {
			rows[i] = rng.IntN(max)
			want[i] = uint32(rows[i])
		}
		slices.Sort(want)
		want = slices.Compact(want)
		if got := uniqueRows(rows); !slices.Equal(got, want) {
			t.Fatalf("uniqueRows = %v, want %v", got, want)
		}
	}
}
