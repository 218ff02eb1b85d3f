package psm

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/webkv/webkv/kvcore/compute"
)

// TestReduceCPUMatchesBackend checks combine's reduce of a small key on
// the CPU backend (reduceCPU) against the backend's own Reduce, bit for
// bit, for 1 to reduceSrcsMax sources, keys of 1 to cleanKeyMax words and
// the scales a round uses (1, a mean's 1/n, a rescale's e/n), and that it
// does nothing and reports false where the backend must decide: more
// sources, a buffer of another backend, lengths that differ, an output
// that is a source.
func TestReduceCPUMatchesBackend(t *testing.T) {
	const seed = 7
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	cpu := compute.NewCPU(nil)
	alloc := func(vals []float32) compute.Buffer {
		b, err := cpu.Alloc(len(vals))
		if err != nil {
			t.Fatal(err)
		}
		if err := cpu.Write(b, 0, vals); err != nil {
			t.Fatal(err)
		}
		return b
	}
	random := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(7)-3)))
		}
		return v
	}
	read := func(b compute.Buffer) []float32 {
		return b.(*compute.CPUBuffer).Float32s()
	}
	for range 300 {
		n := 1 + rng.IntN(40)
		if rng.IntN(8) == 0 {
			n = cleanKeyMax - rng.IntN(3)
		}
		ns := 1 + rng.IntN(reduceSrcsMax)
		scale := []float32{1, 1 / float32(ns), float32(ns+1) / float32(ns), 0.37}[rng.IntN(4)]
		srcs := make([]compute.Buffer, ns)
		for i := range srcs {
			srcs[i] = alloc(random(n))
		}
		old := random(n)
		want, got := alloc(old), alloc(old)
		if err := cpu.Reduce(want, srcs, scale); err != nil {
			t.Fatal(err)
		}
		if !reduceCPU(got, srcs, scale) {
			t.Fatalf("%d sources of %d words: not reduced", ns, n)
		}
		for i, w := range read(want) {
			if g := read(got)[i]; math.Float32bits(g) != math.Float32bits(w) {
				t.Fatalf("%d sources of %d words, scale %v: word %d is %v, the backend's %v", ns, n, scale, i, g, w)
			}
		}
	}
	// Left to the backend: nothing written.
	src := func(n int) compute.Buffer { return alloc(random(n)) }
	dst := alloc([]float32{1, 2, 3, 4})
	many := make([]compute.Buffer, reduceSrcsMax+1)
	for i := range many {
		many[i] = src(4)
	}
	for name, c := range map[string]struct {
		dst  compute.Buffer
		srcs []compute.Buffer
	}{
		"too many sources":       {dst, many},
		"another backend's dst":  {otherBuffer{}, []compute.Buffer{src(4)}},
		"another backend's src":  {dst, []compute.Buffer{src(4), otherBuffer{}}},
		"a source of other size": {dst, []compute.Buffer{src(4), src(5)}},
		"the output a source":    {dst, []compute.Buffer{src(4), dst}},
		"the output source 0":    {dst, []compute.Buffer{dst, src(4)}},
	} {
		if reduceCPU(c.dst, c.srcs, 1) {
			t.Errorf("%s: reduced", name)
		}
	}
	if got := read(dst); got[0] != 1 || got[1] != 2 || got[2] != 3 || got[3] != 4 {
		t.Errorf("a refused reduce wrote %v", got)
	}
}

// otherBuffer is a buffer of no backend psm knows.
type otherBuffer struct{}

func (otherBuffer) Len() int { return 4 }

// TestJobReducesOnCPULoopsOnly: combine sums on the host only for the CPU
// backend itself without an accelerator (whose calls from MinLen words go
// to the accelerator), never through a wrapping backend.
func TestJobReducesOnCPULoopsOnly(t *testing.T) {
	for _, c := range []struct {
		be   compute.Backend
		want bool
	}{
		{compute.NewCPU(nil), true},
		{wrappedCPU{compute.NewCPU(nil)}, false},
		{compute.NewCPU(&compute.CPUOptions{Accel: nopAccel{}}), false},
	} {
		j, err := New(Config{Job: "t", Backend: c.be})
		if err != nil {
			t.Fatal(err)
		}
		if j.cpuLoops != c.want {
			t.Errorf("%s: cpuLoops %v, want %v", c.be.Name(), j.cpuLoops, c.want)
		}
		j.Close()
	}
}

// nopAccel is an accelerator that takes no call (MinLen is out of reach).
type nopAccel struct{ compute.Accelerator }

func (nopAccel) Name() string { return "nop" }
func (nopAccel) MinLen() int  { return math.MaxInt }
