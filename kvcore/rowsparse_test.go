package kvcore_test

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/optimizer"
)

// Row-sparse values on local stores, ported from MXNet's
// tests/python/unittest/test_kvstore.py (test_row_sparse_pull,
// test_sparse_aggregator), and the lazy updates of MXNet's sparse
// optimizer kernels.

var rsShape = []int{4, 4}

func mustStore(t *testing.T, typ string) *kvcore.Store {
	t.Helper()
	s, err := kvcore.Create(t.Context(), typ, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func filled(t testing.TB, dev kvcore.Device, x float32, shape ...int) *kvcore.Array {
	t.Helper()
	n := 1
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = x
	}
	a, err := kvcore.FromSlice(dev, v, shape...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// randRowSparse is MXNet's rand_ndarray(shape, 'row_sparse'): a random
// subset of the rows, random values; and its dense form.
func randRowSparse(t testing.TB, r *rand.Rand, dev kvcore.Device, shape []int) (kvcore.RowSparse, []float32) {
	t.Helper()
	width := shape[1]
	dense := make([]float32, shape[0]*width)
	var rs kvcore.RowSparse
	var data []float32
	for row := range shape[0] {
		if r.IntN(2) == 0 {
			continue
		}
		rs.Rows = append(rs.Rows, int64(row))
		for j := range width {
			v := r.Float32()
			dense[row*width+j] = v
			data = append(data, v)
		}
	}
	if len(rs.Rows) > 0 {
		a, err := kvcore.FromSlice(dev, data, len(rs.Rows), width)
		if err != nil {
			t.Fatal(err)
		}
		rs.Data = a
	}
	return rs, dense
}

func TestRowSparsePull(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	for _, typ := range []string{"local", "device"} {
		kv := mustStore(t, typ)
		for _, k := range []string{"a", "b", "c", "d"} {
			if err := kv.Init(t.Context(), kvcore.StrKey(k), filled(t, kvcore.CPU(0), 0, rsShape...)); err != nil {
				t.Fatal(err)
			}
		}
		if err := kv.Init(t.Context(), kvcore.StrKey("e"), filled(t, kvcore.CPU(0), 1, rsShape...)); err != nil {
			t.Fatal(err)
		}
		for _, count := range []int{1, 4} {
			outs := make([]kvcore.RowSparse, count)
			ids := make([][]int64, count)
			for i := range count {
				outs[i].Data = filled(t, kvcore.CPU(i), 7, rsShape...) // overwritten: rows not pulled become 0
				for range rsShape[0] {
					ids[i] = append(ids[i], int64(r.IntN(rsShape[0])))
				}
				if err := kv.RowSparsePull(kvcore.StrKey("e"), &outs[i], ids[i]); err != nil {
					t.Fatal(err)
				}
			}
			for i := range count {
				got := values(t, outs[i].Data)
				for row := range rsShape[0] {
					want := float32(0)
					if slices.Contains(ids[i], int64(row)) {
						want = 1
					}
					for j := range rsShape[1] {
						if g := got[row*rsShape[1]+j]; g != want {
							t.Fatalf("%s: pull %d of rows %v: row %d = %v, want %v", typ, i, ids[i], row, g, want)
						}
					}
				}
				want := slices.Clone(ids[i])
				slices.Sort(want)
				if want = slices.Compact(want); !slices.Equal(outs[i].Rows, want) {
					t.Fatalf("%s: out.Rows %v, want %v (sorted, unique)", typ, outs[i].Rows, want)
				}
			}
		}
		// MXNet's docstring example: row_ids [1, 0] into a row-sparse out
		// (the rows only).
		out := kvcore.RowSparse{Data: filled(t, kvcore.CPU(0), 7, 2, 4)}
		if err := kv.RowSparsePull(kvcore.StrKey("e"), &out, []int64{1, 0}); err != nil {
			t.Fatal(err)
		}
		if got := values(t, out.Data); !slices.Equal(out.Rows, []int64{0, 1}) || slices.ContainsFunc(got, func(v float32) bool { return v != 1 }) {
			t.Fatalf("%s: compact pull of rows [1 0]: rows %v values %v", typ, out.Rows, got)
		}
	}
}

func TestRowSparseAggregator(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 2))
	const numDevs = 4
	for _, typ := range []string{"local", "device"} {
		kv := mustStore(t, typ)
		keys := kvcore.StrKeys("a", "b", "c", "d")
		for _, k := range keys {
			if err := kv.Init(t.Context(), k, filled(t, kvcore.CPU(0), 0, rsShape...)); err != nil {
				t.Fatal(err)
			}
		}
		allRows := []int64{0, 1, 2, 3}
		check := func(k kvcore.Key) {
			vals := make([]kvcore.RowSparse, numDevs)
			expected := make([]float32, 16)
			for i := range numDevs {
				var dense []float32
				vals[i], dense = randRowSparse(t, r, kvcore.CPU(i), rsShape)
				for j, v := range dense {
					expected[j] += v
				}
			}
			if err := kv.PushRowSparse(k, vals...); err != nil {
				t.Fatal(err)
			}
			sum := make([]float32, 16)
			for i := range numDevs {
				out := kvcore.RowSparse{Data: filled(t, kvcore.CPU(i), 0, rsShape...)}
				if err := kv.RowSparsePull(k, &out, allRows); err != nil {
					t.Fatal(err)
				}
				for j, v := range values(t, out.Data) {
					sum[j] += v
				}
			}
			for j := range sum {
				if d := sum[j] - expected[j]*numDevs; d > 1e-5 || d < -1e-5 {
					t.Fatalf("%s key %v [%d]: sum of the pulls %v, want %v", typ, k, j, sum[j], expected[j]*numDevs)
				}
			}
		}
		for _, k := range keys {
			check(k)
		}
	}
}

// A row-sparse push without an updater assigns the sparse sum: rows it
// does not hold become zero (MXNet's copy of a row_sparse push).
func TestRowSparseAssign(t *testing.T) {
	kv := mustStore(t, "local")
	k := kvcore.IntKey(3)
	if err := kv.Init(t.Context(), k, filled(t, kvcore.CPU(0), 5, 3, 2)); err != nil {
		t.Fatal(err)
	}
	v1, _ := kvcore.FromSlice(kvcore.CPU(0), []float32{1, 2}, 1, 2)
	v2, _ := kvcore.FromSlice(kvcore.CPU(1), []float32{10, 20, 30, 40}, 2, 2)
	if err := kv.PushRowSparse(k, kvcore.RowSparse{Rows: []int64{2}, Data: v1}, kvcore.RowSparse{Rows: []int64{0, 2}, Data: v2}); err != nil {
		t.Fatal(err)
	}
	out := filled(t, kvcore.CPU(0), 0, 3, 2)
	if err := kv.Pull(k, out); err != nil {
		t.Fatal(err)
	}
	if got, want := values(t, out), []float32{10, 20, 0, 0, 31, 42}; !slices.Equal(got, want) {
		t.Fatalf("after the push: %v, want %v", got, want)
	}
}

// lazyRef applies MXNet's lazy update by its definition: every touched row
// takes one step of the dense kernel on its own (the kernels are
// elementwise), with the key's update count; untouched rows and their
// states do not change.
type lazyRef struct {
	be     *compute.CPU
	opt    *optimizer.Spec
	name   string
	width  int
	w      []float32
	states [][]float32
	t      int
}

func (l *lazyRef) step(t *testing.T, rows []int64, grad []float32) {
	l.t++
	var p compute.StepParams
	l.opt.Params(l.name, l.t, l.t, &p)
	ns := l.opt.Kind().NumStates(&p)
	for len(l.states) < ns {
		l.states = append(l.states, make([]float32, len(l.w)))
	}
	buf := func(v []float32) compute.Buffer {
		b, err := l.be.Alloc(len(v))
		if err != nil {
			t.Fatal(err)
		}
		if err := l.be.Write(b, 0, v); err != nil {
			t.Fatal(err)
		}
		return b
	}
	for i, r := range rows {
		seg := func(v []float32) []float32 { return v[int(r)*l.width : (int(r)+1)*l.width] }
		wb, gb := buf(seg(l.w)), buf(grad[i*l.width:(i+1)*l.width])
		var sb []compute.Buffer
		for _, s := range l.states {
			sb = append(sb, buf(seg(s)))
		}
		if err := l.be.Step(l.opt.Kind(), &p, wb, gb, sb); err != nil {
			t.Fatal(err)
		}
		l.be.Read(wb, 0, seg(l.w))
		for j, s := range l.states {
			l.be.Read(sb[j], 0, seg(s))
		}
	}
}

func TestRowSparseLazyUpdate(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	p := func(v float64) *float64 { return &v }
	opts := map[string]*optimizer.Spec{
		"sgd":         {Name: "sgd", LearningRate: p(0.1), WD: p(0.01)},
		"sgdMomentum": {Name: "sgd", LearningRate: p(0.1), Momentum: p(0.9), WD: p(0.01)},
		"adam":        {Name: "adam", LearningRate: p(0.01), WD: p(0.001)},
		"adagrad":     {Name: "adagrad", LearningRate: p(0.1)},
		"ftrl":        {Name: "ftrl", LearningRate: p(0.1)},
		"rmsprop":     {Name: "rmsprop", LearningRate: p(0.01), WD: p(0.01)}, // not lazy: dense update
		// MXNet's lazy_update=False (std_update): the dense update.
		"sgdStd":  {Name: "sgd", LearningRate: p(0.1), Momentum: p(0.9), WD: p(0.01), LazyUpdate: new(false)},
		"adamStd": {Name: "adam", LearningRate: p(0.01), WD: p(0.001), LazyUpdate: new(false)},
	}
	const rows, width, steps = 9, 3, 5
	for name, opt := range opts {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 3))
			init := make([]float32, rows*width)
			for i := range init {
				init[i] = r.Float32()*2 - 1
			}
			k := kvcore.IntKey(7)
			kv := mustStore(t, "local")
			dense := mustStore(t, "local") // the non-lazy reference: dense pushes of the densified gradients
			for _, s := range []*kvcore.Store{kv, dense} {
				a, _ := kvcore.FromSlice(kvcore.CPU(0), init, rows, width)
				if err := s.Init(t.Context(), k, a); err != nil {
					t.Fatal(err)
				}
				if err := s.SetOptimizer(t.Context(), opt); err != nil {
					t.Fatal(err)
				}
			}
			ref := &lazyRef{be: compute.NewCPU(nil), opt: opt, name: "7", width: width, w: slices.Clone(init)}
			touched := map[int64]bool{}
			for range steps {
				var ids []int64
				for row := range rows {
					if r.IntN(3) == 0 {
						ids = append(ids, int64(row))
						touched[int64(row)] = true
					}
				}
				g := make([]float32, len(ids)*width)
				full := make([]float32, rows*width)
				for i := range g {
					g[i] = r.Float32()*2 - 1
					full[int(ids[i/width])*width+i%width] = g[i]
				}
				v := kvcore.RowSparse{Rows: ids}
				if len(ids) > 0 {
					v.Data, _ = kvcore.FromSlice(kvcore.CPU(0), g, len(ids), width)
				}
				if err := kv.PushRowSparse(k, v); err != nil {
					t.Fatal(err)
				}
				fa, _ := kvcore.FromSlice(kvcore.CPU(0), full, rows, width)
				if err := dense.Push(k, fa); err != nil {
					t.Fatal(err)
				}
				ref.step(t, ids, g)
			}
			out := filled(t, kvcore.CPU(0), 0, rows, width)
			if err := kv.Pull(k, out); err != nil {
				t.Fatal(err)
			}
			got := values(t, out)
			want := ref.w
			if !opt.Lazy() {
				want = values(t, pulled(t, dense, k, rows, width))
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("[%d] = %v, want %v", i, got[i], want[i])
				}
				if opt.Lazy() && !touched[int64(i/width)] && got[i] != init[i] {
					t.Fatalf("row %d was never pushed but changed: %v -> %v", i/width, init[i], got[i])
				}
			}
		})
	}
}

func pulled(t *testing.T, s *kvcore.Store, k kvcore.Key, shape ...int) *kvcore.Array {
	out := filled(t, kvcore.CPU(0), 0, shape...)
	if err := s.Pull(k, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRowSparseBadInput(t *testing.T) {
	kv := mustStore(t, "local")
	k := kvcore.IntKey(1)
	if err := kv.Init(t.Context(), k, filled(t, kvcore.CPU(0), 0, 4, 2)); err != nil {
		t.Fatal(err)
	}
	two := filled(t, kvcore.CPU(0), 1, 2, 2)
	for _, c := range []struct {
		name string
		err  error
		call func() error
	}{
		{"push row out of range", kvcore.ErrBadRowIDs, func() error { return kv.PushRowSparse(k, kvcore.RowSparse{Rows: []int64{1, 4}, Data: two}) }},
		{"push negative row", kvcore.ErrBadRowIDs, func() error { return kv.PushRowSparse(k, kvcore.RowSparse{Rows: []int64{-1, 2}, Data: two}) }},
		{"push rows not increasing", kvcore.ErrBadRowIDs, func() error { return kv.PushRowSparse(k, kvcore.RowSparse{Rows: []int64{2, 1}, Data: two}) }},
		{"push repeated row", kvcore.ErrBadRowIDs, func() error { return kv.PushRowSparse(k, kvcore.RowSparse{Rows: []int64{1, 1}, Data: two}) }},
		{"push data of the wrong shape", kvcore.ErrShapeMismatch, func() error { return kv.PushRowSparse(k, kvcore.RowSparse{Rows: []int64{1}, Data: two}) }},
		{"push rows without data", kvcore.ErrNilArray, func() error { return kv.PushRowSparse(k, kvcore.RowSparse{Rows: []int64{1}}) }},
		{"pull row out of range", kvcore.ErrBadRowIDs, func() error {
			return kv.RowSparsePull(k, &kvcore.RowSparse{Data: filled(t, kvcore.CPU(0), 0, 4, 2)}, []int64{0, 9})
		}},
		{"pull into a wrong shape", kvcore.ErrShapeMismatch, func() error { return kv.RowSparsePull(k, &kvcore.RowSparse{Data: two}, []int64{0}) }},
		{"unknown key", kvcore.ErrUnknownKey, func() error { return kv.PushRowSparse(kvcore.IntKey(99), kvcore.RowSparse{}) }},
	} {
		err := c.call()
		if !errors.Is(err, c.err) {
			t.Errorf("%s: %v, want %v", c.name, err, c.err)
		}
		t.Logf("%s: %v", c.name, err)
	}
	if err := kv.WaitAll(t.Context()); err != nil {
		t.Fatal(err)
	}
	// lazy_update is sgd's and adam's (MXNet's), no other optimizer's.
	if _, err := optimizer.Parse([]byte(`{"name":"adam","lazy_update":false}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := optimizer.Parse([]byte(`{"name":"rmsprop","lazy_update":true}`)); !errors.Is(err, kvcore.ErrBadOptimizer) {
		t.Fatalf("rmsprop with lazy_update: %v", err)
	}
	// A device store with compression refuses row-sparse pushes (MXNet).
	dev := mustStore(t, "device")
	if err := dev.Init(t.Context(), k, filled(t, kvcore.CPU(0), 0, 4, 2)); err != nil {
		t.Fatal(err)
	}
	if err := dev.SetGradientCompression(t.Context(), compute.Compression{Kind: compute.Compress2Bit, Threshold: 0.5}); err != nil {
		t.Fatal(err)
	}
	if err := dev.PushRowSparse(k, kvcore.RowSparse{Rows: []int64{0, 1}, Data: two}); !errors.Is(err, kvcore.ErrUnsupported) {
		t.Fatalf("compressed row-sparse push: %v", err)
	}
}

// An Updater sees the densified sum of a row-sparse push (MXNet's updater
// gets the merged row_sparse value; webkv's updaters take dense arrays).
func TestRowSparseUpdater(t *testing.T) {
	kv := mustStore(t, "local")
	k := kvcore.IntKey(2)
	if err := kv.Init(t.Context(), k, filled(t, kvcore.CPU(0), 1, 3, 2)); err != nil {
		t.Fatal(err)
	}
	if err := kv.SetUpdater(t.Context(), func(key kvcore.Key, merged, stored *kvcore.Array) error {
		m, err := merged.Data(t.Context())
		if err != nil {
			return err
		}
		s, err := stored.Data(t.Context())
		if err != nil {
			return err
		}
		for i := range s {
			s[i] += m[i]
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	v, _ := kvcore.FromSlice(kvcore.CPU(0), []float32{3, 4}, 1, 2)
	for range 2 {
		if err := kv.PushRowSparse(k, kvcore.RowSparse{Rows: []int64{1}, Data: v}); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := values(t, pulled(t, kv, k, 3, 2)), []float32{1, 1, 7, 9, 1, 1}; !slices.Equal(got, want) {
		t.Fatalf("after two pushes through the updater: %v, want %v", got, want)
	}
}
