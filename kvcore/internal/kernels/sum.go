//go:build !wasm

package kernels

// The streaming reduce loops. Natively the compiler keeps these plain loops
// tight; sum_wasm.go has unrolled versions for Go's wasm backend (written
// by gensum from the same expressions), and on amd64 the 4-input sum (the
// common multi-device case) runs 8 lanes at a time with AVX2
// (sum_amd64.s): the scalar loop is bound by instructions, not memory.

func sum2s(d, a, b []float32, s float32) {
	a, b = a[:len(d)], b[:len(d)]
	for i := range d {
		d[i] = (a[i] + b[i]) * s
	}
}

func sum3s(d, a, b, c []float32, s float32) {
	a, b, c = a[:len(d)], b[:len(d)], c[:len(d)]
	for i := range d {
		d[i] = ((a[i] + b[i]) + c[i]) * s
	}
}

func sum4s(d, a, b, c, e []float32, s float32) {
	a, b, c, e = a[:len(d)], b[:len(d)], c[:len(d)], e[:len(d)]
	if m := sum4sVec(d, a, b, c, e, s); m > 0 {
		d, a, b, c, e = d[m:], a[m:], b[m:], c[m:], e[m:]
	}
	for i := range d {
		d[i] = (((a[i] + b[i]) + c[i]) + e[i]) * s
	}
}
