package backendtest

import (
	"fmt"

	"github.com/webkv/webkv/kvcore/compute"
)

// rows checks GatherRows and ScatterRows (compute.RowMover, or the host
// fallback of compute.GatherRows/ScatterRows when the backend has none)
// against the CPU reference, bit for bit, on seeded random rows: whole
// arrays (shift 0) and key parts that start and end inside a row (the
// shift and length of a parameter server's part), repeated and unsorted
// rows for gather, assign and add for scatter.
func (s *suite) rows() {
	type tc struct{ rows, width, shift, n, picks int }
	cases := []tc{
		{rows: 10, width: 3, n: 30, picks: 4},
		{rows: 10, width: 1, n: 10, picks: 10},
		{rows: 64, width: 17, shift: 5, n: 64*17 - 30, picks: 20}, // a part inside rows 0 and 62
		{rows: 1000, width: 64, n: 64000, picks: 300},
		{rows: 2000, width: 40, shift: 3, n: 80000 - 50, picks: 1800}, // over 256 KiB: bound in windows
		{rows: 4, width: 5, n: 20, picks: 0},
	}
	for _, c := range cases {
		what := fmt.Sprintf("%d rows of %d, shift %d, dense %d", c.picks, c.width, c.shift, c.n)
		// Gather: any rows, repeated, in any order.
		var any []uint32
		for range c.picks {
			any = append(any, uint32(s.rng.IntN(c.rows)))
		}
		// Scatter: strictly increasing rows.
		var inc []uint32
		for r := range c.rows {
			if len(inc) < c.picks && s.rng.IntN(c.rows) < 2*c.picks {
				inc = append(inc, uint32(r))
			}
		}
		dense := s.random(c.n, 3)
		m := max(len(any), len(inc)) * c.width
		if m == 0 {
			m = 1
		}
		compact := s.random(m, 2)
		for _, op := range []struct {
			name string
			f    func(be compute.Backend, d, cb compute.Buffer) error
		}{
			{"gather", func(be compute.Backend, d, cb compute.Buffer) error {
				return compute.GatherRows(be, cb, d, any, c.width, c.shift)
			}},
			{"scatter", func(be compute.Backend, d, cb compute.Buffer) error {
				return compute.ScatterRows(be, d, cb, inc, c.width, c.shift, false)
			}},
			{"scatter add", func(be compute.Backend, d, cb compute.Buffer) error {
				return compute.ScatterRows(be, d, cb, inc, c.width, c.shift, true)
			}},
		} {
			gd, gc := s.pair(s.b, dense, compact, op.f)
			wd, wc := s.pair(s.ref, dense, compact, op.f)
			s.exact(op.name+" "+what+": dense", gd, wd)
			s.exact(op.name+" "+what+": compact", gc, wc)
		}
	}
	// Bad arguments are errors, not panics.
	d, cb := s.alloc(s.b, 8), s.alloc(s.b, 4)
	for _, bad := range []struct {
		name string
		f    func() error
	}{
		{"scatter of unsorted rows", func() error { return compute.ScatterRows(s.b, d, cb, []uint32{1, 0}, 2, 0, false) }},
		{"gather into a short buffer", func() error { return compute.GatherRows(s.b, cb, d, []uint32{0, 1, 2}, 2, 0) }},
		{"width 0", func() error { return compute.GatherRows(s.b, cb, d, []uint32{0}, 0, 0) }},
	} {
		if err := s.call(bad.name, bad.f); err == nil {
			s.t.Errorf("%s: no error", bad.name)
		}
	}
	s.b.Free(d)
	s.b.Free(cb)
}

// pair runs f on be over fresh copies of dense and compact and returns
// both buffers' values afterwards.
func (s *suite) pair(be compute.Backend, dense, compact []float32, f func(be compute.Backend, d, cb compute.Buffer) error) ([]float32, []float32) {
	s.t.Helper()
	d, cb := s.upload(be, dense), s.upload(be, compact)
	s.must(be.Name()+": rows", func() error { return f(be, d, cb) })
	gd, gc := s.download(be, d), s.download(be, cb)
	be.Free(d)
	be.Free(cb)
	return gd, gc
}
