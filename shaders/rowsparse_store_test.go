//go:build cgo && !js

package shaders_test

import (
	"context"
	"math"
	"testing"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/optimizer"
)

// TestDeviceStoreRowSparse runs row-sparse pushes and pulls on a "device"
// store on the WebGPU backend (values on two GPU devices with overlapping
// rows, lazy Adam: the WGSL gather, step and scatter) and compares every
// pull, dense and compact, with the same run on the CPU backend; rows never
// pushed keep their initial value.
func TestDeviceStoreRowSparse(t *testing.T) {
	b := newBackend(t, nil)
	r := seeded(t)
	ctx := context.Background()
	const rows, width, rounds = 257, 9, 3
	init := randData(r, rows*width)
	type push struct {
		rows [2][]int64
		data [2][]float32
	}
	pushes := make([]push, rounds)
	for i := range pushes {
		for d := range 2 {
			for row := range rows {
				if r.IntN(8) == 0 {
					pushes[i].rows[d] = append(pushes[i].rows[d], int64(row))
				}
			}
			pushes[i].data[d] = randData(r, len(pushes[i].rows[d])*width)
		}
	}
	pullIDs := []int64{5, 3, 256, 5, 0, 100}
	run := func(be compute.Backend) (dense, compact [][]float32) {
		s, err := kvcore.Create(ctx, "device", &kvcore.Options{Backend: be})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.SetOptimizer(ctx, optimizer.Adam(0.01)); err != nil {
			t.Fatal(err)
		}
		a, _ := kvcore.FromSlice(kvcore.GPU(0, be), init, rows, width)
		k := kvcore.IntKey(3)
		if err := s.Init(ctx, k, a); err != nil {
			t.Fatal(err)
		}
		for _, p := range pushes {
			var vs []kvcore.RowSparse
			for d := range 2 {
				v := kvcore.RowSparse{Rows: p.rows[d]}
				if len(v.Rows) > 0 {
					v.Data, _ = kvcore.FromSlice(kvcore.GPU(d, be), p.data[d], len(v.Rows), width)
				}
				vs = append(vs, v)
			}
			if err := s.PushRowSparse(k, vs...); err != nil {
				t.Fatal(err)
			}
			full, _ := kvcore.NewArray(kvcore.GPU(1, be), rows, width)
			out := kvcore.RowSparse{Data: full}
			if err := s.RowSparsePull(k, &out, pullIDs); err != nil {
				t.Fatal(err)
			}
			rowsOnly, _ := kvcore.NewArray(kvcore.GPU(0, be), 5, width)
			out2 := kvcore.RowSparse{Data: rowsOnly}
			if err := s.RowSparsePull(k, &out2, pullIDs); err != nil {
				t.Fatal(err)
			}
			all, _ := kvcore.NewArray(kvcore.GPU(0, be), rows, width)
			if err := s.Pull(k, all); err != nil {
				t.Fatal(err)
			}
			for _, x := range []struct {
				a  *kvcore.Array
				to *[][]float32
			}{{full, &dense}, {rowsOnly, &compact}, {all, &dense}} {
				v, err := x.a.ToSlice(ctx)
				if err != nil {
					t.Fatal(err)
				}
				*x.to = append(*x.to, v)
			}
		}
		return dense, compact
	}
	gd, gc := run(b)
	wd, wc := run(compute.NewCPU(nil))
	for _, c := range []struct {
		what      string
		got, want [][]float32
	}{{"dense pulls", gd, wd}, {"compact pulls", gc, wc}} {
		for i := range c.want {
			for j := range c.want[i] {
				g, w := float64(c.got[i][j]), float64(c.want[i][j])
				if d := math.Abs(g - w); !(d <= 1e-6+1e-5*math.Abs(w)) {
					t.Fatalf("%s %d [%d]: webgpu %v, cpu %v", c.what, i, j, g, w)
				}
			}
		}
	}
	touched := map[int]bool{}
	for _, p := range pushes {
		for d := range 2 {
			for _, row := range p.rows[d] {
				touched[int(row)] = true
			}
		}
	}
	last := gd[len(gd)-1] // the whole key after the last push
	for i, v := range last {
		if !touched[i/width] && v != init[i] {
			t.Fatalf("row %d was never pushed but changed: %v -> %v", i/width, init[i], v)
		}
	}
}
