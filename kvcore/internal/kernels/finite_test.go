package kernels

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
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

// TestCopyFiniteEveryPlace checks CopyFinite at every length up to 100
// (the small loop alone, the vector blocks and their tail) with each kind
// of non-finite value at every place, and with none: the index, and the
// values before it copied bit for bit from seeded random finite values
// (odd lengths end in half a 64-bit word).
func TestCopyFiniteEveryPlace(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	special := []uint32{0x7fc00000, 0x7f800001, 0xffc00001, 0x7f800000, 0xff800000, 0xffffffff}
	for n := range 101 {
		src := make([]float32, n)
		for i := range src {
			src[i] = float32(r.NormFloat64() * 1e30)
		}
		if n > 0 {
			src[r.IntN(n)] = -math.MaxFloat32 // finite, the largest exponent
		}
		for at := -1; at < n; at++ {
			for _, bits := range special {
				in := slices.Clone(src)
				if at >= 0 {
					in[at] = math.Float32frombits(bits)
				}
				dst := make([]float32, n+1)
				dst[n] = 7
				if got := CopyFinite(dst, in); got != at {
					t.Fatalf("n %d, %#x at %d: CopyFinite = %d", n, bits, at, got)
				}
				upTo := n
				if at >= 0 {
					upTo = at
				}
				for i := range upTo {
					if math.Float32bits(dst[i]) != math.Float32bits(in[i]) {
						t.Fatalf("n %d, %#x at %d: dst[%d] = %#x, src %#x", n, bits, at, i, math.Float32bits(dst[i]), math.Float32bits(in[i]))
					}
				}
				if dst[n] != 7 {
					t.Fatalf("n %d: CopyFinite wrote past len(src)", n)
				}
				if at < 0 {
					break
				}
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

// BenchmarkCopyFinite is a checked write of one small key's push (and a
// vector block with its tail), in cache: ns/op is the call.
func BenchmarkCopyFinite(b *testing.B) {
	for _, n := range []int{16, 48, 100} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			src, dst := make([]float32, n), make([]float32, n)
			for i := range src {
				src[i] = float32(i) - 7.5
			}
			for b.Loop() {
				if CopyFinite(dst, src) >= 0 {
					b.Fatal("found a non-finite value")
				}
			}
		})
	}
}
