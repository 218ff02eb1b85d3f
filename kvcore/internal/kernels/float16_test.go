package kernels

import (
	"math"
	"math/big"
	"testing"
)

// Every half value converts to float32 and back unchanged, and float32
// values round to the nearest half (ties to even), checked against
// math/big's correctly rounded conversion for all halfway and nearby points.
func TestFloat16RoundTrip(t *testing.T) {
	t.Parallel()
	for h := range 1 << 16 {
		f := f16ToF32(uint16(h))
		back := f32ToF16(f)
		if math.IsNaN(float64(f)) {
			if back&0x7c00 != 0x7c00 || back&0x3ff == 0 {
				t.Fatalf("NaN %#04x came back as %#04x", h, back)
			}
			continue
		}
		if back != uint16(h) {
			t.Fatalf("half %#04x -> %v -> %#04x", h, f, back)
		}
	}
}

func refF16(f float32) uint16 {
	x := new(big.Float).SetFloat64(float64(f))
	// Round to 11 significant bits, with the exponent range of half.
	if f == 0 {
		return f32ToF16(f)
	}
	m, e := math.Frexp(math.Abs(float64(f)))
	_ = m
	prec := uint(11)
	if e-1 < -14 { // subnormal: fewer bits
		p := 11 - (-14 - (e - 1))
		if p <= 0 {
			// Below half the smallest subnormal (or exactly half: to even 0).
			tiny := math.Ldexp(1, -24)
			if math.Abs(float64(f)) > tiny/2 {
				return uint16(math.Float32bits(f)>>16)&0x8000 | 1
			}
			return uint16(math.Float32bits(f)>>16) & 0x8000
		}
		prec = uint(p)
	}
	x.SetPrec(prec).SetMode(big.ToNearestEven)
	r, _ := x.Float64()
	if math.Abs(r) > 65504 {
		return uint16(math.Float32bits(f)>>16)&0x8000 | 0x7c00
	}
	// r is exactly representable in half: convert via the exact path.
	return f32ToF16(float32(r))
}

func TestFloat16Rounding(t *testing.T) {
	t.Parallel()
	for h := range 0x7c00 { // every finite positive half, and the points around it
		lo := f16ToF32(uint16(h))
		hi := f16ToF32(uint16(h + 1))
		mid := (float64(lo) + float64(hi)) / 2
		for _, f := range []float32{float32(mid), math.Nextafter32(float32(mid), 0), math.Nextafter32(float32(mid), 1e9), -float32(mid)} {
			if got, want := f32ToF16(f), refF16(f); got != want {
				t.Fatalf("f32ToF16(%g) = %#04x, want %#04x", f, got, want)
			}
		}
	}
	if f32ToF16(1e6) != 0x7c00 || f32ToF16(-1e6) != 0xfc00 {
		t.Fatal("overflow does not give Inf")
	}
}
