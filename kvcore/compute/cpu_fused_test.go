package compute_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/optimizer"
)

// fusedSpecs cover every kernel and its state variants.
var fusedSpecs = []string{
	`{"name":"sgd","learning_rate":0.1,"wd":0.01}`,
	`{"name":"sgd","learning_rate":0.1,"momentum":0.9,"wd":0.01,"clip_gradient":0.5}`,
	`{"name":"nag","learning_rate":0.1,"momentum":0.9,"wd":0.01}`,
	`{"name":"adam","learning_rate":0.01,"wd":0.01}`,
	`{"name":"adamw","learning_rate":0.01,"wd":0.01,"clip_gradient":0.3}`,
	`{"name":"adagrad","learning_rate":0.1,"wd":0.01}`,
	`{"name":"rmsprop","learning_rate":0.01,"wd":0.01}`,
	`{"name":"rmsprop","learning_rate":0.01,"centered":true,"clip_weights":0.8}`,
	`{"name":"adadelta","rho":0.9,"wd":0.01}`,
	`{"name":"signum","learning_rate":0.01,"momentum":0}`,
	`{"name":"signum","learning_rate":0.01,"momentum":0.9,"wd_lh":0.01}`,
	`{"name":"ftrl","learning_rate":0.1,"lamda1":0.01,"wd":0.01}`,
	`{"name":"lamb","learning_rate":0.01,"wd":0.01}`,
	`{"name":"lamb","learning_rate":0.01,"lower_bound":0.001,"upper_bound":10,"bias_correction":false}`,
}

// TestCPUReduceStepMatchesReduceThenStep: the fused reduce-and-step gives
// the bits of Reduce into a buffer and Step from it, for every kernel, 1 to
// 6 inputs (one passed twice), scale 1 and not, lengths around the fused
// block and the LAMB blocks, and lengths that split across goroutines.
func TestCPUReduceStepMatchesReduceThenStep(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 9))
	lens := []int{1, 7, 8, 4095, 4096*2 + 3, compute.ReduceStepBlock + 1, 2*compute.ReduceStepBlock + 9}
	// Lengths that split across goroutines, with fewer input counts (they
	// are slow under the race detector).
	big := []int{compute.ParallelMin*2 + 77, compute.LambParallelMin + 4096*3 + 9}
	switch {
	case testing.Short():
	case raceEnabled:
		lens = append(lens[:5], big[1]) // about 10x slower per element
	default:
		lens = append(lens, big...)
	}
	be := compute.NewCPU(nil)
	for _, spec := range fusedSpecs {
		opt, err := optimizer.Parse([]byte(spec))
		if err != nil {
			t.Fatal(err)
		}
		kind := opt.Kind()
		for _, n := range lens {
			ks := []int{1, 2, 4, 5, 6}
			if n >= big[0] {
				ks = []int{2, 5}
			}
			for _, k := range ks {
				scale := float32(1)
				if k%2 == 0 {
					scale = 0.25
				}
				what := fmt.Sprintf("%s n=%d inputs=%d scale=%v", spec, n, k, scale)
				var p compute.StepParams
				opt.Params("0", 2, 2, &p)
				ns := kind.NumStates(&p)
				w0 := randSlice(r, n, 1)
				st0 := make([][]float32, ns)
				for i := range st0 {
					st0[i] = randSlice(r, n, 0.1)
					for j := range st0[i] {
						st0[i][j] *= st0[i][j] // >= 0: variances and histories
					}
				}
				ins := make([]compute.Buffer, k)
				for i := range ins {
					if i == 3 {
						ins[i] = ins[1] // one buffer passed twice
						continue
					}
					ins[i] = upload(t, be, randSlice(r, n, 1))
				}
				// Fused.
				w1, st1 := upload(t, be, w0), uploadAll(t, be, st0)
				if err := be.ReduceStep(kind, &p, w1, ins, scale, st1); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				// Reduce, then Step.
				w2, st2 := upload(t, be, w0), uploadAll(t, be, st0)
				m, _ := be.Alloc(n)
				if err := be.Reduce(m, ins, scale); err != nil {
					t.Fatal(err)
				}
				if err := be.Step(kind, &p, w2, m, st2); err != nil {
					t.Fatal(err)
				}
				sameBuffers(t, what+": weight", w1, w2)
				for i := range st1 {
					sameBuffers(t, fmt.Sprintf("%s: state %d", what, i), st1[i], st2[i])
				}
			}
		}
	}
}

// TestCPUReduceStepAliases: an input that is the weight or a state gives
// the result of Reduce then Step all the same.
func TestCPUReduceStepAliases(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 9))
	be := compute.NewCPU(nil)
	const n = compute.ParallelMin + 4099
	for _, spec := range []string{fusedSpecs[3], fusedSpecs[12]} {
		opt, _ := optimizer.Parse([]byte(spec))
		var p compute.StepParams
		opt.Params("0", 1, 1, &p)
		w0, s0, s1, g := randSlice(r, n, 1), randSlice(r, n, 0.1), randSlice(r, n, 0.1), randSlice(r, n, 1)
		for i := range s1 {
			s1[i] *= s1[i]
		}
		for alias := range 3 {
			w1, st1, g1 := upload(t, be, w0), uploadAll(t, be, [][]float32{s0, s1}), upload(t, be, g)
			ins1 := []compute.Buffer{g1, []compute.Buffer{w1, st1[0], st1[1]}[alias]}
			w2, st2, g2 := upload(t, be, w0), uploadAll(t, be, [][]float32{s0, s1}), upload(t, be, g)
			ins2 := []compute.Buffer{g2, []compute.Buffer{w2, st2[0], st2[1]}[alias]}
			if err := be.ReduceStep(opt.Kind(), &p, w1, ins1, 0.5, st1); err != nil {
				t.Fatal(err)
			}
			m, _ := be.Alloc(n)
			if err := be.Reduce(m, ins2, 0.5); err != nil {
				t.Fatal(err)
			}
			if err := be.Step(opt.Kind(), &p, w2, m, st2); err != nil {
				t.Fatal(err)
			}
			what := fmt.Sprintf("%s alias %d", spec, alias)
			sameBuffers(t, what+": weight", w1, w2)
			sameBuffers(t, what+": state 0", st1[0], st2[0])
			sameBuffers(t, what+": state 1", st1[1], st2[1])
		}
	}
}

// TestCPUReduceStepErrors: malformed calls return errors, never panic.
func TestCPUReduceStepErrors(t *testing.T) {
	t.Parallel()
	be := compute.NewCPU(nil)
	var p compute.StepParams
	p.Beta1, p.Beta2 = 0.9, 0.999
	w, _ := be.Alloc(10)
	g, _ := be.Alloc(10)
	short, _ := be.Alloc(9)
	st := []compute.Buffer{upload(t, be, make([]float32, 10)), upload(t, be, make([]float32, 10))}
	for _, c := range []struct {
		name string
		err  error
	}{
		{"no inputs", be.ReduceStep(compute.OptAdam, &p, w, nil, 1, st)},
		{"short input", be.ReduceStep(compute.OptAdam, &p, w, []compute.Buffer{g, short}, 1, st)},
		{"short state", be.ReduceStep(compute.OptAdam, &p, w, []compute.Buffer{g}, 1, []compute.Buffer{st[0], short})},
		{"state count", be.ReduceStep(compute.OptAdam, &p, w, []compute.Buffer{g}, 1, st[:1])},
		{"unknown kind", be.ReduceStep(compute.OptKind(99), &p, w, []compute.Buffer{g}, 1, st)},
		{"nil input", be.ReduceStep(compute.OptAdam, &p, w, []compute.Buffer{nil}, 1, st)},
		{"nil weight", be.ReduceStep(compute.OptAdam, &p, nil, []compute.Buffer{g}, 1, st)},
		{"lamb short state", be.ReduceStep(compute.OptLAMB, &p, w, []compute.Buffer{g}, 1, []compute.Buffer{st[0], short})},
	} {
		if c.err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
}

// TestCPUReduceStepNoAllocs: after the first call (which sizes the pooled
// scratch blocks), a fused step allocates nothing.
func TestCPUReduceStepNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	be := compute.NewCPU(nil)
	const n = compute.ParallelMin*2 + 5
	for _, spec := range []string{fusedSpecs[3], fusedSpecs[12]} {
		opt, _ := optimizer.Parse([]byte(spec))
		var p compute.StepParams
		opt.Params("0", 1, 1, &p)
		w, _ := be.Alloc(n)
		ins := []compute.Buffer{w, w}
		st := make([]compute.Buffer, 2)
		st[0], _ = be.Alloc(n)
		st[1], _ = be.Alloc(n)
		ins[0], _ = be.Alloc(n)
		ins[1], _ = be.Alloc(n)
		step := func() {
			if err := be.ReduceStep(opt.Kind(), &p, w, ins, 0.5, st); err != nil {
				t.Fatal(err)
			}
		}
		step()
		if a := testing.AllocsPerRun(10, step); a != 0 {
			t.Errorf("%s: %v allocations per fused step", spec, a)
		}
	}
}

func upload(t *testing.T, be *compute.CPU, v []float32) compute.Buffer {
	t.Helper()
	b, err := be.Alloc(len(v))
	if err != nil {
		t.Fatal(err)
	}
	if err := be.Write(b, 0, v); err != nil {
		t.Fatal(err)
	}
	return b
}

func uploadAll(t *testing.T, be *compute.CPU, vs [][]float32) []compute.Buffer {
	t.Helper()
	out := make([]compute.Buffer, len(vs))
	for i, v := range vs {
		out[i] = upload(t, be, v)
	}
	return out
}

func sameBuffers(t *testing.T, what string, a, b compute.Buffer) {
	t.Helper()
	x, y := a.(*compute.CPUBuffer).Float32s(), b.(*compute.CPUBuffer).Float32s()
	for i := range x {
		if math.Float32bits(x[i]) != math.Float32bits(y[i]) && !(x[i] != x[i] && y[i] != y[i]) {
			t.Fatalf("%s: element %d = %v, want %v", what, i, x[i], y[i])
		}
	}
}
