package kernels

// reduceBlock keeps the output block in L1 while all inputs stream through it.
const reduceBlock = 2048

// ReduceRange computes dst[i] = scale * (((s0+s1)+s2)+…) over [lo, hi).
// Up to 4 inputs go in one streaming pass with the scale fused (x*1 == x
// exactly, so scale 1 needs no branch): the hardware prefetchers see 5 long
// streams and nothing is touched twice. More inputs go in blocks that keep
// the output in L1 while the rest stream through, the scale fused into the
// last pass.
func ReduceRange(dst []float32, srcs [][]float32, scale float32, lo, hi int) {
	ReduceInto(dst[lo:hi], srcs, scale, lo)
}

// ReduceInto is ReduceRange into a block of its own: d[i] = scale *
// (((s0[lo+i]+s1[lo+i])+s2[lo+i])+…) for i in [0, len(d)). The CPU
// backend's fused reduce-and-step sums into a small block that stays in L1
// and runs the optimizer on it.
func ReduceInto(d []float32, srcs [][]float32, scale float32, lo int) {
	hi := lo + len(d)
	switch len(srcs) {
	case 1:
		scale1(d, srcs[0][lo:hi], scale)
		return
	case 2:
		sum2s(d, srcs[0][lo:hi], srcs[1][lo:hi], scale)
		return
	case 3:
		sum3s(d, srcs[0][lo:hi], srcs[1][lo:hi], srcs[2][lo:hi], scale)
		return
	case 4:
		sum4s(d, srcs[0][lo:hi], srcs[1][lo:hi], srcs[2][lo:hi], srcs[3][lo:hi], scale)
		return
	}
	for b := lo; b < hi; b += reduceBlock {
		e := min(b+reduceBlock, hi)
		d := d[b-lo : e-lo]
		sum4s(d, srcs[0][b:e], srcs[1][b:e], srcs[2][b:e], srcs[3][b:e], 1)
		rest := srcs[4:]
		for len(rest) > 3 {
			acc3(d, rest[0][b:e], rest[1][b:e], rest[2][b:e])
			rest = rest[3:]
		}
		switch len(rest) { // the last 1 to 3 inputs, scaled
		case 3:
			acc3s(d, rest[0][b:e], rest[1][b:e], rest[2][b:e], scale)
		case 2:
			acc2s(d, rest[0][b:e], rest[1][b:e], scale)
		case 1:
			acc1s(d, rest[0][b:e], scale)
		}
	}
}

func scale1(d, a []float32, s float32) {
	a = a[:len(d)]
	for i := range d {
		d[i] = a[i] * s
	}
}

func acc3s(d, a, b, c []float32, s float32) {
	a, b, c = a[:len(d)], b[:len(d)], c[:len(d)]
	for i := range d {
		d[i] = (((d[i] + a[i]) + b[i]) + c[i]) * s
	}
}

func acc2s(d, a, b []float32, s float32) {
	a, b = a[:len(d)], b[:len(d)]
	for i := range d {
		d[i] = ((d[i] + a[i]) + b[i]) * s
	}
}

func acc1s(d, a []float32, s float32) {
	a = a[:len(d)]
	for i := range d {
		d[i] = (d[i] + a[i]) * s
	}
}

func acc3(d, a, b, c []float32) {
	a, b, c = a[:len(d)], b[:len(d)], c[:len(d)]
	for i := range d {
		d[i] = ((d[i] + a[i]) + b[i]) + c[i]
	}
}
