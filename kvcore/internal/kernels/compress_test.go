package kernels_test

import (
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/internal/kernels"
)

// The models below are written independently of compress.go, in the style of
// MXNet's own test model, tests/nightly/test_kvstore.py
// compute_expected_2bit_quantization: build the codes as a string of '0'/'1'
// characters in value order, pad with '0' to a multiple of 16 characters,
// then turn each 32 characters into a word by reversing the order of its four
// bytes (str[24:32]+str[16:24]+str[8:16]+str[0:8], read as a big-endian
// binary number, is what struct.unpack("f", pack("I", ...)) gives on a
// little-endian machine). The Python model adds in float64 (numpy); MXNet's
// kernel (src/kvstore/gradient_compression-inl.h quantize_2bit) adds and
// subtracts in float32, and so do these models, because that is the
// arithmetic webkv must reproduce bit for bit. The 1bit model follows
// quantize_1bit of the same file the same way (MXNet has no Python model for
// it): '1' where r > t (r -= 1), else '0' (r += 1).

// sub returns s[lo:hi] clamped to len(s), as Python slicing does.
func sub(s string, lo, hi int) string {
	lo, hi = min(lo, len(s)), min(hi, len(s))
	return s[lo:hi]
}

func bitsToWords(t *testing.T, bits string) []uint32 {
	if len(bits)%16 != 0 {
		bits += strings.Repeat("0", 16-len(bits)%16)
	}
	var words []uint32
	for i := 0; i < len(bits); i += 32 {
		s := sub(bits, i+24, i+32) + sub(bits, i+16, i+24) + sub(bits, i+8, i+16) + sub(bits, i, i+8)
		v, err := strconv.ParseUint(s, 2, 32)
		if err != nil {
			t.Fatalf("model: %v", err)
		}
		words = append(words, uint32(v))
	}
	return words
}

// model2Bit returns the packed words, the new residual and the dequantized
// values of one 2bit quantization of g with residual r.
func model2Bit(t *testing.T, g, r []float32, th float32) (words []uint32, res, deq []float32) {
	var bits strings.Builder
	for i := range g {
		a := r[i] + g[i]
		switch {
		case a >= th:
			bits.WriteString("11")
			res = append(res, a-th)
			deq = append(deq, th)
		case a <= -1*th:
			bits.WriteString("10")
			res = append(res, a+th)
			deq = append(deq, -1*th)
		default:
			bits.WriteString("00")
			res = append(res, a)
			deq = append(deq, 0)
		}
	}
	return bitsToWords(t, bits.String()), res, deq
}

func model1Bit(t *testing.T, g, r []float32, th float32) (words []uint32, res, deq []float32) {
	var bits strings.Builder
	for i := range g {
		a := r[i] + g[i]
		if a > th {
			bits.WriteString("1")
			res = append(res, a-1)
			deq = append(deq, 1)
		} else {
			bits.WriteString("0")
			res = append(res, a+1)
			deq = append(deq, -1)
		}
	}
	// Pad to whole 32-bit words (the 16-character padding of the 2bit model
	// then yields 0 bits, as MXNet leaves them).
	s := bits.String()
	if len(s)%32 != 0 {
		s += strings.Repeat("0", 32-len(s)%32)
	}
	return bitsToWords(t, s), res, deq
}

func wordsOf(f []float32) []uint32 {
	w := make([]uint32, len(f))
	for i, v := range f {
		w[i] = math.Float32bits(v)
	}
	return w
}

func seed(t testing.TB) uint64 {
	s := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("WEBKV_SEED"), 10, 64); err == nil {
		s = v
	}
	t.Logf("seed %d (rerun with WEBKV_SEED=%d)", s, s)
	return s
}

// TestCompressHandWorked checks words worked out by hand from the masks in
// gradient_compression-inl.h (posbits 0xc0,0x30,0x0c,0x03; negbits
// 0x80,0x20,0x08,0x02; 1bit bits 0x80..0x01; byte 0 is the low byte).
func TestCompressHandWorked(t *testing.T) {
	t.Parallel()
	// 2bit, t = 0.5: byte 0 = 11 10 00 11 = 0xe3, byte 1 = 10 10 10 10 =
	// 0xaa, byte 2 = 0, byte 3 = 11 00 00 00 = 0xc0.
	g := []float32{0.5, -0.5, 0.1, 0.7, -1, -1, -1, -1, 0, 0, 0, 0, 1, 0, 0, 0, -0.25}
	r := make([]float32, len(g))
	out := make([]float32, 2)
	kernels.Quantize2Bit(out, g, r, 0.5)
	if w := wordsOf(out); w[0] != 0xc000aae3 || w[1] != 0 {
		t.Fatalf("2bit words %#x, want [0xc000aae3 0]", w)
	}
	wantR := []float32{0, 0, 0.1, 0.2, -0.5, -0.5, -0.5, -0.5, 0, 0, 0, 0, 0.5, 0, 0, 0, -0.25}
	for i := range wantR {
		if r[i] != wantR[i] && math.Abs(float64(r[i]-wantR[i])) > 1e-7 {
			t.Fatalf("2bit residual[%d] = %v, want %v", i, r[i], wantR[i])
		}
	}
	// Carried residual: -0.25 + -0.25 reaches -0.5 -> code 10 in the top
	// bits of byte 0 of word 1.
	g2 := make([]float32, len(g))
	g2[16] = -0.25
	kernels.Quantize2Bit(out, g2, r, 0.5)
	if w := wordsOf(out); w[1] != 0x80 {
		t.Fatalf("2bit carried word 1 = %#x, want 0x80", w[1])
	}
	deq := make([]float32, len(g))
	kernels.Quantize2Bit(out, g, make([]float32, len(g)), 0.5)
	kernels.Dequantize2Bit(deq, out, 0.5)
	wantD := []float32{0.5, -0.5, 0, 0.5, -0.5, -0.5, -0.5, -0.5, 0, 0, 0, 0, 0.5, 0, 0, 0, 0}
	for i := range wantD {
		if deq[i] != wantD[i] {
			t.Fatalf("2bit dequantized[%d] = %v, want %v", i, deq[i], wantD[i])
		}
	}

	// 1bit, t = 0: byte 0 = 1011 0001 = 0xb1, byte 1 all +1 = 0xff, bytes 2-3
	// all -1 = 0; word 1 holds value 32 (+1) in bit 7.
	g1 := make([]float32, 33)
	copy(g1, []float32{1, -1, 1, 1, -1, -1, -1, 1, 2, 2, 2, 2, 2, 2, 2, 2})
	for i := 16; i < 32; i++ {
		g1[i] = -3
	}
	g1[32] = 0.5
	r1 := make([]float32, 33)
	out1 := make([]float32, 2)
	kernels.Quantize1Bit(out1, g1, r1, 0)
	if w := wordsOf(out1); w[0] != 0xffb1 || w[1] != 0x80 {
		t.Fatalf("1bit words %#x, want [0xffb1 0x80]", w)
	}
	if r1[0] != 0 || r1[1] != 0 || r1[8] != 1 || r1[16] != -2 || r1[32] != -0.5 {
		t.Fatalf("1bit residuals %v", r1)
	}
	d1 := make([]float32, 33)
	kernels.Dequantize1Bit(d1, out1, 0)
	for i, want := range []float32{1, -1, 1, 1, -1, -1, -1, 1} {
		if d1[i] != want {
			t.Fatalf("1bit dequantized[%d] = %v, want %v", i, d1[i], want)
		}
	}
	if d1[16] != -1 || d1[32] != 1 {
		t.Fatalf("1bit dequantized %v", d1)
	}
}

var compressLens = []int{1, 3, 15, 16, 17, 31, 32, 33, 1023}

func randGrad(rng *rand.Rand, n int, scale float32) []float32 {
	g := make([]float32, n)
	for i := range g {
		g[i] = (rng.Float32()*2 - 1) * scale
		switch rng.IntN(16) {
		case 0:
			g[i] = 0
		case 1:
			g[i] = float32(math.Copysign(0, -1))
		}
	}
	return g
}

// TestCompressMatchesModel runs several rounds per length and threshold with
// the residual carried across calls, comparing packed words, residuals and
// dequantized values bit for bit with the models.
func TestCompressMatchesModel(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(seed(t), 1))
	type cfg struct {
		kind compute.CompressionKind
		th   float32
	}
	cfgs := []cfg{
		{compute.Compress2Bit, 0.5}, {compute.Compress2Bit, 0.1}, {compute.Compress2Bit, 3},
		{compute.Compress1Bit, 0.5}, {compute.Compress1Bit, 0}, {compute.Compress1Bit, -0.5},
	}
	for _, c := range cfgs {
		for _, n := range compressLens {
			r := make([]float32, n)
			mr := make([]float32, n)
			out := make([]float32, c.kind.PackedLen(n))
			deq := make([]float32, n)
			for round := 0; round < 5; round++ {
				g := randGrad(rng, n, 0.6)
				var words []uint32
				var mdeq []float32
				if c.kind == compute.Compress2Bit {
					words, mr, mdeq = model2Bit(t, g, mr, c.th)
					kernels.Quantize2Bit(out, g, r, c.th)
					kernels.Dequantize2Bit(deq, out, c.th)
				} else {
					words, mr, mdeq = model1Bit(t, g, mr, c.th)
					kernels.Quantize1Bit(out, g, r, c.th)
					kernels.Dequantize1Bit(deq, out, c.th)
				}
				got := wordsOf(out)
				if len(got) != len(words) {
					t.Fatalf("%v t=%v n=%d: %d words, model %d", c.kind, c.th, n, len(got), len(words))
				}
				for i := range words {
					if got[i] != words[i] {
						t.Fatalf("%v t=%v n=%d round %d: word %d = %#08x, model %#08x", c.kind, c.th, n, round, i, got[i], words[i])
					}
				}
				for i := range mr {
					if math.Float32bits(r[i]) != math.Float32bits(mr[i]) {
						t.Fatalf("%v t=%v n=%d round %d: residual[%d] = %v, model %v", c.kind, c.th, n, round, i, r[i], mr[i])
					}
					if deq[i] != mdeq[i] {
						t.Fatalf("%v t=%v n=%d round %d: dequantized[%d] = %v, model %v", c.kind, c.th, n, round, i, deq[i], mdeq[i])
					}
				}
			}
		}
	}
}

// TestCompressRoundTrip checks properties that hold whatever the layout:
// residual_new + dequantized == residual_old + g up to float32 rounding of
// the one subtraction, dequantized values are in the code set, and splitting
// at word boundaries gives the same words.
func TestCompressRoundTrip(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(seed(t), 2))
	const n = 1000
	for _, kind := range []compute.CompressionKind{compute.Compress2Bit, compute.Compress1Bit} {
		th := float32(0.3)
		per := 16
		if kind == compute.Compress1Bit {
			per = 32
		}
		r := randGrad(rng, n, 0.2)
		r2 := append([]float32(nil), r...)
		old := append([]float32(nil), r...)
		g := randGrad(rng, n, 1)
		out := make([]float32, kind.PackedLen(n))
		out2 := make([]float32, kind.PackedLen(n))
		deq := make([]float32, n)
		q, dq := kernels.Quantize2Bit, kernels.Dequantize2Bit
		if kind == compute.Compress1Bit {
			q, dq = kernels.Quantize1Bit, kernels.Dequantize1Bit
		}
		q(out, g, r, th)
		dq(deq, out, th)
		for i := range deq {
			v := old[i] + g[i]
			if got := r[i] + deq[i]; math.Abs(float64(got-v)) > 1e-6*math.Max(1, math.Abs(float64(v))) {
				t.Fatalf("%v: r+deq = %v at %d, want r_old+g = %v", kind, got, i, v)
			}
			ok := deq[i] == 1 || deq[i] == -1
			if kind == compute.Compress2Bit {
				ok = deq[i] == 0 || deq[i] == th || deq[i] == -th
				if ok && deq[i] == 0 && (v >= th || v <= -th) {
					t.Fatalf("2bit: %v quantized to 0 with t=%v", v, th)
				}
			}
			if !ok {
				t.Fatalf("%v: dequantized[%d] = %v, not a code value", kind, i, deq[i])
			}
		}
		// Split at word-aligned points.
		for lo := 0; lo < n; {
			hi := min(n, lo+per*(1+rng.IntN(5)))
			q(out2[lo/per:kind.PackedLen(hi)], g[lo:hi], r2[lo:hi], th)
			lo = hi
		}
		for i := range out {
			if math.Float32bits(out[i]) != math.Float32bits(out2[i]) {
				t.Fatalf("%v: split quantization differs at word %d", kind, i)
			}
		}
	}
}

// TestCompressNaN: a NaN residual compares false everywhere, as in MXNet's
// kernels: 2bit code 00, 1bit bit 0, and the residual stays NaN.
func TestCompressNaN(t *testing.T) {
	t.Parallel()
	nan := float32(math.NaN())
	g := []float32{nan, 1}
	r := make([]float32, 2)
	out := make([]float32, 1)
	kernels.Quantize2Bit(out, g, r, 0.5)
	if w := math.Float32bits(out[0]); w != 0x30 {
		t.Fatalf("2bit NaN word %#x, want 0x30", w)
	}
	if !math.IsNaN(float64(r[0])) {
		t.Fatalf("2bit NaN residual %v", r[0])
	}
	r = make([]float32, 2)
	kernels.Quantize1Bit(out, g, r, 0)
	if w := math.Float32bits(out[0]); w != 0x40 {
		t.Fatalf("1bit NaN word %#x, want 0x40", w)
	}
}

// TestDequantizeCode01 checks that the never-written 2bit code 01 reads as
// 0, as MXNet's dequantize_2bit does, and that any word pattern (NaN bit
// patterns included) unpacks without being changed on the way.
func TestDequantizeCode01(t *testing.T) {
	t.Parallel()
	in := []float32{math.Float32frombits(0x55555555), math.Float32frombits(0xff80aa7f)}
	out := make([]float32, 32)
	kernels.Dequantize2Bit(out, in, 2)
	for i := 0; i < 16; i++ {
		if out[i] != 0 {
			t.Fatalf("code 01 at %d dequantized to %v", i, out[i])
		}
	}
	// 0xff80aa7f: byte0 0x7f = 01 11 11 11, byte1 0xaa = 10 10 10 10,
	// byte2 0x80 = 10 00 00 00, byte3 0xff; the word is a signaling NaN.
	want := []float32{0, 2, 2, 2, -2, -2, -2, -2, -2, 0, 0, 0, 2, 2, 2, 2}
	for i, w := range want {
		if out[16+i] != w {
			t.Fatalf("value %d = %v, want %v", 16+i, out[16+i], w)
		}
	}
}

func TestCompressNoAlloc(t *testing.T) {
	const n = 1000
	g, r := make([]float32, n), make([]float32, n)
	o2, o1 := make([]float32, compute.Compress2Bit.PackedLen(n)), make([]float32, compute.Compress1Bit.PackedLen(n))
	d := make([]float32, n)
	allocs := testing.AllocsPerRun(10, func() {
		kernels.Quantize2Bit(o2, g, r, 0.5)
		kernels.Dequantize2Bit(d, o2, 0.5)
		kernels.Quantize1Bit(o1, g, r, 0.5)
		kernels.Dequantize1Bit(d, o1, 0.5)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per call", allocs)
	}
}

func TestCompressBadLengthsPanic(t *testing.T) {
	t.Parallel()
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", name)
			}
		}()
		f()
	}
	mustPanic("short out", func() { kernels.Quantize2Bit(make([]float32, 1), make([]float32, 17), make([]float32, 17), 1) })
	mustPanic("short residual", func() { kernels.Quantize1Bit(make([]float32, 1), make([]float32, 17), make([]float32, 16), 1) })
	mustPanic("long in", func() { kernels.Dequantize2Bit(make([]float32, 16), make([]float32, 2), 1) })
	mustPanic("short in", func() { kernels.Dequantize1Bit(make([]float32, 33), make([]float32, 1), 1) })
}
