package kernels

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// firstNonFiniteRef is FirstNonFinite's reference loop (its doc comment).
func firstNonFiniteRef(data []byte) int {
	for i := range len(data) / 4 {
		f := math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			return i
		}
	}
	return -1
}

// TestFirstNonFiniteMatchesReference checks FirstNonFinite (the vector
// path where there is one, then the Go loops) against the reference on
// seeded random values with NaNs (quiet, signalling, negative), ±Inf,
// ±MaxFloat32, denormals and zeros planted at random places, at lengths
// that end inside, at and after the 128-byte vector blocks and at byte
// offsets that misalign the values.
func TestFirstNonFiniteMatchesReference(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	special := []uint32{0x7fc00000, 0x7f800001, 0xffc00001, 0x7f800000, 0xff800000,
		math.Float32bits(math.MaxFloat32), math.Float32bits(-math.MaxFloat32), 1, 0x80000000, 0x7f7fffff}
	for trial := 0; trial < 4000; trial++ {
		n := r.IntN(300)
		off := r.IntN(4)
		buf := make([]byte, off+4*n+r.IntN(4)) // a partial value at the end is ignored
		data := buf[off:]
		for i := range n {
			bits := math.Float32bits(float32(r.NormFloat64() * 1e3))
			if r.IntN(64) == 0 {
				bits = special[r.IntN(len(special))]
			}
			binary.LittleEndian.PutUint32(data[4*i:], bits)
		}
		if got, want := FirstNonFinite(data), firstNonFiniteRef(data); got != want {
			t.Fatalf("trial %d (n %d, offset %d): FirstNonFinite = %d, want %d", trial, n, off, got, want)
		}
	}
}

// TestCopyFiniteMatchesReference checks CopyFinite against copy and the
// reference loop on the same kind of seeded inputs: the index it returns,
// and every element before it copied bit for bit (all of them when none is
// found).
func TestCopyFiniteMatchesReference(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	special := []uint32{0x7fc00000, 0x7f800001, 0xffc00001, 0x7f800000, 0xff800000, 1, 0x80000000, 0x7f7fffff}
	for trial := 0; trial < 4000; trial++ {
		n := r.IntN(300)
		src := make([]float32, n)
		raw := make([]byte, 4*n)
		for i := range src {
			bits := math.Float32bits(float32(r.NormFloat64() * 1e3))
			if r.IntN(96) == 0 {
				bits = special[r.IntN(len(special))]
			}
			src[i] = math.Float32frombits(bits)
			binary.LittleEndian.PutUint32(raw[4*i:], bits)
		}
		dst := make([]float32, n+r.IntN(3))
		got, want := CopyFinite(dst, src), firstNonFiniteRef(raw)
		if got != want {
			t.Fatalf("trial %d (n %d): CopyFinite = %d, want %d", trial, n, got, want)
		}
		upTo := n
		if want >= 0 {
			upTo = want
		}
		for i := range upTo {
			if math.Float32bits(dst[i]) != math.Float32bits(src[i]) {
				t.Fatalf("trial %d: dst[%d] = %#x, src %#x", trial, i, math.Float32bits(dst[i]), math.Float32bits(src[i]))
			}
		}
	}
}

// BenchmarkFirstNonFinite is the check a parameter server gives every
// float32 push, on 4 KiB and 16 MiB of finite values; x_copy is its speed
// over copy() of the same bytes, in the same run.
func BenchmarkFirstNonFinite(b *testing.B) {
	for _, size := range []int{4 << 10, 16 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			data := make([]byte, size)
			for i := 0; i < len(data); i += 4 {
				binary.LittleEndian.PutUint32(data[i:], math.Float32bits(float32(i%1000)-500))
			}
			dst := make([]byte, len(data))
			copy(dst, data) // touch it first
			reps := max(1, (64<<20)/size)
			start := time.Now()
			for range reps {
				copy(dst, data)
			}
			perCopy := time.Since(start) / time.Duration(reps)
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for b.Loop() {
				if FirstNonFinite(data) >= 0 {
					b.Fatal("found a non-finite value")
				}
			}
			b.ReportMetric(perCopy.Seconds()/(b.Elapsed().Seconds()/float64(b.N)), "x_copy")
		})
	}
}
