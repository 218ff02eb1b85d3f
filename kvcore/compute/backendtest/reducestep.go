package backendtest

import (
	"fmt"

	"github.com/webkv/webkv/kvcore/compute"
)

// reduceStep checks the optional compute.ReduceStepper capability:
// ReduceStep must give what Reduce into a buffer followed by Step gives on
// the reference, within the Step tolerance, for every kernel (each
// optimizer spec), 1 and 3 inputs (the third is the first again), scale 1
// and 0.5, two steps in a row. A backend without the capability has
// nothing to check here.
func (s *suite) reduceStep() {
	rs, ok := s.b.(compute.ReduceStepper)
	if !ok {
		s.t.Logf("%s has no ReduceStep: nothing to check", s.b.Name())
		return
	}
	for _, c := range s.parsedCases() {
		for _, n := range Lengths {
			for _, k := range []int{1, 3} {
				s.reduceStepCase(rs, c, n, k)
			}
		}
	}
}

func (s *suite) reduceStepCase(rs compute.ReduceStepper, c stepCase, n, k int) {
	s.t.Helper()
	p0 := c.params(1)
	ns := c.kind.NumStates(&p0)
	w := s.random(n, 1)
	bw, rw := s.upload(s.b, w), s.upload(s.ref, w)
	rm := s.alloc(s.ref, n)
	bst, rst, prevS := s.states(c, ns, n)
	allowed := 0
	if discontinuous(c.kind) {
		allowed = 1 + n/10000
	}
	prevW := w
	for t := 1; t <= 2; t++ {
		p := c.params(t)
		scale := float32(1)
		if t == 2 {
			scale = 0.5
		}
		what := fmt.Sprintf("%v reduce-step %d (%s) n=%d inputs=%d scale=%v", c.kind, t, c.name, n, k, scale)
		bins, rins := make([]compute.Buffer, k), make([]compute.Buffer, k)
		for i := range k {
			if i == 2 {
				bins[i], rins[i] = bins[0], rins[0]
				continue
			}
			g := s.random(n, 1)
			bins[i], rins[i] = s.upload(s.b, g), s.upload(s.ref, g)
		}
		s.must(what+" (reference Reduce)", func() error { return s.ref.Reduce(rm, rins, scale) })
		s.must(what+" (reference Step)", func() error { return s.ref.Step(c.kind, &p, rw, rm, rst) })
		pb := p
		s.must(what, func() error { return rs.ReduceStep(c.kind, &pb, bw, bins, scale, bst) })
		wantW := s.download(s.ref, rw)
		s.close(what+": weight", s.download(s.b, bw), wantW, prevW, allowed)
		prevW = wantW
		for i := range ns {
			want := s.download(s.ref, rst[i])
			s.close(fmt.Sprintf("%s: state %d", what, i), s.download(s.b, bst[i]), want, prevS[i], allowed)
			prevS[i] = want
		}
		if allowed > 0 {
			s.must("Write weight", func() error { return s.b.Write(bw, 0, wantW) })
			for i := range ns {
				s.must("Write state", func() error { return s.b.Write(bst[i], 0, prevS[i]) })
			}
		}
	}
}
