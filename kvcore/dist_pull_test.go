package kvcore_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/psm"
)

// boxed is a CPU backend whose buffers are not *compute.CPUBuffer (as a
// GPU backend's are not): no array of it has host words, so a pull into it
// always goes the general way (the key's own buffer, then the backend's
// Write).
type boxed struct{ cpu *compute.CPU }

type boxBuf struct{ b compute.Buffer }

func (b boxBuf) Len() int { return b.b.Len() }

func unbox(b compute.Buffer) compute.Buffer { return b.(boxBuf).b }

func unboxAll(bs []compute.Buffer) []compute.Buffer {
	out := make([]compute.Buffer, len(bs))
	for i, b := range bs {
		out[i] = unbox(b)
	}
	return out
}

func (x *boxed) Name() string { return "boxed cpu" }
func (x *boxed) Alloc(n int) (compute.Buffer, error) {
	b, err := x.cpu.Alloc(n)
	if err != nil {
		return nil, err
	}
	return boxBuf{b}, nil
}
func (x *boxed) Free(b compute.Buffer) { x.cpu.Free(unbox(b)) }
func (x *boxed) Write(dst compute.Buffer, off int, src []float32) error {
	return x.cpu.Write(unbox(dst), off, src)
}
func (x *boxed) Read(src compute.Buffer, off int, dst []float32) error {
	return x.cpu.Read(unbox(src), off, dst)
}
func (x *boxed) Copy(dst, src compute.Buffer) error { return x.cpu.Copy(unbox(dst), unbox(src)) }
func (x *boxed) Fill(dst compute.Buffer, v float32) error {
	return x.cpu.Fill(unbox(dst), v)
}
func (x *boxed) Reduce(dst compute.Buffer, srcs []compute.Buffer, scale float32) error {
	return x.cpu.Reduce(unbox(dst), unboxAll(srcs), scale)
}
func (x *boxed) Step(kind compute.OptKind, p *compute.StepParams, weight, grad compute.Buffer, states []compute.Buffer) error {
	return x.cpu.Step(kind, p, unbox(weight), unbox(grad), unboxAll(states))
}
func (x *boxed) Quantize(c compute.Compression, grad, residual, out compute.Buffer) error {
	return x.cpu.Quantize(c, unbox(grad), unbox(residual), unbox(out))
}
func (x *boxed) Dequantize(c compute.Compression, in, out compute.Buffer) error {
	return x.cpu.Dequantize(c, unbox(in), unbox(out))
}
func (x *boxed) Sync() error { return x.cpu.Sync() }

// A pull list's answer reaches every kind of output: the key's one host
// output (groupDone's loop for a list whose every key has one, and a key
// of a list that has others), several outputs, a device's outputs (the
// key's own buffer, then the backend's Write), a key named twice in the
// call, a pushpull list's outputs. Seeded random key sizes and values over
// two list operations (5,000 keys), against the values pushed; then a
// failed answer (keys the restarted server lost) fails every output of its
// list and names the list's keys, and the store pulls on.
func TestDistPullListOutputs(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	for _, device := range []bool{false, true} {
		t.Run(fmt.Sprintf("device=%v", device), func(t *testing.T) {
			ctx := testCtx(t)
			rng := rand.New(rand.NewPCG(seed, 0))
			var be compute.Backend = compute.NewCPU(nil)
			typ, dev := "dist_sync", kvcore.CPU(0)
			if device {
				be = &boxed{cpu: compute.NewCPU(nil)}
				typ, dev = "dist_device_sync", kvcore.GPU(0, be)
			}
			srv := testServer(t, psm.Config{})
			s, err := kvcore.Create(ctx, typ, &kvcore.Options{Backend: be, Transport: srv.Connect("job", 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			const n = 5000
			sizes := make([]int, n)
			keys := make([]kvcore.Key, n)
			for i := range sizes {
				sizes[i], keys[i] = 1+rng.IntN(40), kvcore.IntKey(i)
			}
			random := func() [][]float32 {
				vs := make([][]float32, n)
				for i := range vs {
					vs[i] = make([]float32, sizes[i])
					for j := range vs[i] {
						vs[i][j] = float32(rng.NormFloat64())
					}
				}
				return vs
			}
			mk := func(v []float32) *kvcore.Array {
				a, err := kvcore.FromSlice(dev, v)
				if err != nil {
					t.Fatal(err)
				}
				return a
			}
			filled := func(i int) *kvcore.Array {
				v := make([]float32, sizes[i])
				for j := range v {
					v[j] = -1
				}
				return mk(v)
			}
			check := func(what string, a *kvcore.Array, want []float32) {
				t.Helper()
				got, err := a.ToSlice(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for j := range want {
					if got[j] != want[j] {
						t.Fatalf("%s: element %d = %v, want %v", what, j, got[j], want[j])
					}
				}
			}
			wait := func() {
				t.Helper()
				if err := s.WaitAll(ctx); err != nil {
					t.Fatal(err)
				}
			}
			first := random()
			inits := make([]*kvcore.Array, n)
			for i := range inits {
				inits[i] = mk(first[i])
			}
			if err := s.InitList(ctx, keys, inits); err != nil {
				t.Fatal(err)
			}

			// One output per key; every third key (and the last) with two
			// or three outputs; the same call again with new values pushed.
			for step, vals := range [][][]float32{first, random()} {
				if step > 0 {
					ins := make([][]*kvcore.Array, n)
					for i := range ins {
						ins[i] = []*kvcore.Array{mk(vals[i])}
					}
					if err := s.PushList(keys, ins, 0); err != nil {
						t.Fatal(err)
					}
				}
				one := make([][]*kvcore.Array, n)
				many := make([][]*kvcore.Array, n)
				for i := range one {
					one[i] = []*kvcore.Array{filled(i)}
					many[i] = []*kvcore.Array{filled(i)}
					if i%3 == 0 || i == n-1 {
						for range 1 + rng.IntN(2) {
							many[i] = append(many[i], filled(i))
						}
					}
				}
				if err := s.PullList(keys, one, 0); err != nil {
					t.Fatal(err)
				}
				if err := s.PullList(keys, many, 0); err != nil {
					t.Fatal(err)
				}
				wait()
				for i := range one {
					check(fmt.Sprintf("step %d: key %d", step, i), one[i][0], vals[i])
					for o, a := range many[i] {
						check(fmt.Sprintf("step %d: key %d, output %d of %d", step, i, o, len(many[i])), a, vals[i])
					}
				}
			}

			// A key named twice (each time with an output of its own).
			vals := random()
			ins, pulled := make([][]*kvcore.Array, n), make([][]*kvcore.Array, n)
			for i := range ins {
				ins[i], pulled[i] = []*kvcore.Array{mk(vals[i])}, []*kvcore.Array{filled(i)}
			}
			if err := s.PushList(keys, ins, 0); err != nil {
				t.Fatal(err)
			}
			twice := []*kvcore.Array{filled(7), filled(4100)}
			if err := s.PullList(append(keys, keys[7], keys[4100]), append(pulled, twice[:1], twice[1:]), 0); err != nil {
				t.Fatal(err)
			}
			wait()
			for i := range pulled {
				check(fmt.Sprintf("repeated call: key %d", i), pulled[i][0], vals[i])
			}
			check("key 7's second output", twice[0], vals[7])
			check("key 4100's second output", twice[1], vals[4100])

			// A pushpull list: the pull list follows the push list's answer.
			vals = random()
			for i := range ins {
				ins[i], pulled[i] = []*kvcore.Array{mk(vals[i])}, []*kvcore.Array{filled(i)}
			}
			if err := s.PushPullList(keys, ins, pulled, 0); err != nil {
				t.Fatal(err)
			}
			wait()
			for i := range pulled {
				check(fmt.Sprintf("pushpull list: key %d", i), pulled[i][0], vals[i])
			}

			// A failed answer: the server restarts from a snapshot without
			// keys from 100 on; a pull list of keys 0 and 100-199 fails
			// whole (its outputs stay as they were, the error names the
			// list), and the keys it still has pull as before.
			var snap []byte
			srv.Do("job", func(j *psm.Job) {
				var err error
				if snap, err = j.AppendSnapshot(nil); err != nil {
					t.Error(err)
				}
			})
			more := make([]kvcore.Key, 100)
			moreInit := make([]*kvcore.Array, 100)
			for i := range more {
				more[i], moreInit[i] = kvcore.IntKey(n+i), mk([]float32{1, 2})
			}
			if err := s.InitList(ctx, more, moreInit); err != nil {
				t.Fatal(err)
			}
			if err := srv.Restore("job", snap); err != nil {
				t.Fatal(err)
			}
			failKeys := append([]kvcore.Key{keys[0]}, more...)
			failOuts := make([][]*kvcore.Array, len(failKeys))
			for i := range failOuts {
				failOuts[i] = []*kvcore.Array{mk([]float32{-1, -1})}
			}
			failOuts[0] = []*kvcore.Array{filled(0)}
			if err := s.PullList(failKeys, failOuts, 0); err != nil {
				t.Fatal(err)
			}
			err = s.WaitAll(ctx)
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("pull of %d keys (key 0 first)", len(failKeys))) {
				t.Fatalf("WaitAll: %v, want the failure of the list of %d keys", err, len(failKeys))
			}
			for i, o := range failOuts {
				// An output of a failed pull reports the failure.
				if _, err := o[0].ToSlice(ctx); !errors.Is(err, kvcore.ErrUnknownKey) {
					t.Fatalf("output %d of the failed list: %v, want the list's error", i, err)
				}
			}
			for i := range pulled {
				pulled[i] = []*kvcore.Array{filled(i)}
			}
			if err := s.PullList(keys, pulled, 0); err != nil {
				t.Fatal(err)
			}
			wait()
			for i := range pulled {
				check(fmt.Sprintf("after the failed list: key %d", i), pulled[i][0], vals[i])
			}
		})
	}
}
