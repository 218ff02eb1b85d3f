//go:build !js && !wasip1

package tests

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/optimizer"
)

// TestWasip1ReactorMatchesNative drives the wasm/wasip1 reactor in wazero
// and a native kvcore store with the same seeded random inits, pushes (one
// to four devices), pulls and pushpulls, with no optimizer, SGD with
// momentum and Adam, and requires the same values from both.
func TestWasip1ReactorMatchesNative(t *testing.T) {
	seed := testSeed(t)
	k := newKV(t)
	ctx := context.Background()
	specs := []string{
		"",
		`{"name":"sgd","learning_rate":0.1,"momentum":0.9,"wd":0.001,"rescale_grad":0.25}`,
		`{"name":"adam","learning_rate":0.01,"clip_gradient":5}`,
	}
	sizes := []int{1, 5, 1000, 70000} // 70000 crosses the CPU backend's parallel split natively
	for _, typ := range []string{"local", "device"} {
		for si, spec := range specs {
			t.Run(fmt.Sprintf("%s/opt%d", typ, si), func(t *testing.T) {
				k := k.with(t)
				rng := rand.New(rand.NewPCG(seed, uint64(si)))
				h := k.ok("kv_create", k.create(typ))
				defer func() { k.ok("kv_close", k.rc("kv_close", uint64(h))) }()
				// The reactor has no GPU: compare with the CPU backend natively too.
				ns, err := kvcore.Create(ctx, typ, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer ns.Close()
				if spec != "" {
					k.ok("kv_set_optimizer", k.rc("kv_set_optimizer", uint64(h), uint64(k.bytes([]byte(spec))), uint64(len(spec))))
					opt, err := optimizer.Parse([]byte(spec))
					if err != nil {
						t.Fatal(err)
					}
					if err := ns.SetOptimizer(ctx, opt); err != nil {
						t.Fatal(err)
					}
				}
				nkeys := 1 + rng.IntN(4)
				n := make([]int, nkeys)
				for key := range nkeys {
					n[key] = sizes[rng.IntN(len(sizes))]
					v := randFloats(rng, n[key])
					k.ok("kv_init", k.rc("kv_init", uint64(h), uint64(key), uint64(k.floats(v)), uint64(n[key])))
					a := mustArray(t, v)
					if err := ns.Init(ctx, kvcore.IntKey(key), a); err != nil {
						t.Fatal(err)
					}
				}
				for round := range 30 {
					key := rng.IntN(nkeys)
					ndev := 1 + rng.IntN(4)
					data := randFloats(rng, ndev*n[key])
					vals := make([]*kvcore.Array, ndev)
					for d := range vals {
						vals[d] = mustArray(t, data[d*n[key]:(d+1)*n[key]])
					}
					what := fmt.Sprintf("round %d key %d (n=%d, %d devices)", round, key, n[key], ndev)
					var got []float32
					switch op := rng.IntN(3); op {
					case 0: // push, then pull
						k.ok("kv_push "+what, k.rc("kv_push", uint64(h), uint64(key), uint64(k.floats(data)), uint64(n[key]), uint64(ndev)))
						if err := ns.Push(kvcore.IntKey(key), vals...); err != nil {
							t.Fatal(err)
						}
						fallthrough
					case 1: // pull
						out := k.bytes(make([]byte, 4*n[key]))
						k.ok("kv_pull "+what, k.rc("kv_pull", uint64(h), uint64(key), uint64(out), uint64(n[key])))
						got = k.readFloats(out, n[key])
						o := mustArray(t, make([]float32, n[key]))
						if err := ns.Pull(kvcore.IntKey(key), o); err != nil {
							t.Fatal(err)
						}
						vals = []*kvcore.Array{o}
					case 2: // pushpull: data and result share the scratch block
						p := k.floats(append(data, make([]float32, n[key])...))
						out := p + uint32(4*ndev*n[key])
						k.ok("kv_pushpull "+what, k.rc("kv_pushpull", uint64(h), uint64(key), uint64(p), uint64(n[key]), uint64(ndev), uint64(out)))
						got = k.readFloats(out, n[key])
						o := mustArray(t, make([]float32, n[key]))
						if err := ns.PushPullTo(kvcore.IntKey(key), vals, o); err != nil {
							t.Fatal(err)
						}
						vals = []*kvcore.Array{o}
					}
					want, err := vals[0].ToSlice(ctx)
					if err != nil {
						t.Fatalf("native %s: %v", what, err)
					}
					if i, ok := closeTo(got, want); !ok {
						t.Fatalf("%s: wasm [%d] = %v, native %v", what, i, got[i], want[i])
					}
				}
				k.ok("kv_wait", k.rc("kv_wait", uint64(h)))
				if err := ns.WaitAll(ctx); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// TestWasip1ReactorErrors checks that bad calls return -1 with a message
// naming what was wrong, and that the module keeps working afterwards.
func TestWasip1ReactorErrors(t *testing.T) {
	k := newKV(t)
	wantErr(t, k, "create unknown type", k.create("nope"), "nope", "unknown store type")
	wantErr(t, k, "create dist without relay", k.create("dist_sync"), "dist_sync", "transport")
	h := k.ok("kv_create", k.create("local"))
	p := k.floats([]float32{1, 2, 3, 4})
	wantErr(t, k, "push before init", k.rc("kv_push", uint64(h), 5, uint64(p), 4, 1), "key 5", "not initialized")
	wantErr(t, k, "pull before init", k.rc("kv_pull", uint64(h), 5, uint64(p), 4), "key 5", "not initialized")
	k.ok("kv_init", k.rc("kv_init", uint64(h), 1, uint64(p), 4))
	wantErr(t, k, "init twice", k.rc("kv_init", uint64(h), 1, uint64(p), 4), "key 1", "already initialized")
	wantErr(t, k, "push wrong size", k.rc("kv_push", uint64(h), 1, uint64(p), 3, 1), "key 1", "shape")
	wantErr(t, k, "push 0 devices", k.rc("kv_push", uint64(h), 1, uint64(p), 4, 0), "key 1", "ndev")
	wantErr(t, k, "pull to a pointer outside kv_alloc memory", k.rc("kv_pull", uint64(h), 1, 16, 4), "key 1", "not inside a block")
	wantErr(t, k, "pull past the end of a block", k.rc("kv_pull", uint64(h), 1, uint64(p), 1<<20), "not inside a block")
	wantErr(t, k, "misaligned pointer", k.rc("kv_pull", uint64(h), 1, uint64(p+1), 2), "aligned")
	wantErr(t, k, "bad handle", k.rc("kv_wait", 99), "handle 99")
	bad := `{"name":"sgd","lr":0.1}`
	wantErr(t, k, "optimizer with a misspelled field", k.rc("kv_set_optimizer", uint64(h), uint64(k.bytes([]byte(bad))), uint64(len(bad))), "invalid optimizer spec", "lr")
	bad = `{"name":"adamax"}`
	wantErr(t, k, "unknown optimizer", k.rc("kv_set_optimizer", uint64(h), uint64(k.bytes([]byte(bad))), uint64(len(bad))), "adamax")
	wantErr(t, k, "free of a non-block", k.rc("kv_free", 12345), "kv_free")
	for _, size := range []uint64{0, 3 << 30} {
		if p := k.call("kv_alloc", size); p != 0 {
			t.Errorf("kv_alloc(%d) = %#x, want 0", size, p)
		} else if msg := k.lastError(); !strings.Contains(msg, fmt.Sprintf("size %d", size)) {
			t.Errorf("kv_alloc(%d): error %q does not name the size", size, msg)
		}
	}

	// The store still works: push [1 2 3 4] from two devices and pull.
	p = k.floats([]float32{1, 2, 3, 4, 10, 20, 30, 40})
	k.ok("kv_push", k.rc("kv_push", uint64(h), 1, uint64(p), 4, 2))
	k.ok("kv_wait", k.rc("kv_wait", uint64(h)))
	k.ok("kv_pull", k.rc("kv_pull", uint64(h), 1, uint64(p), 4))
	got := k.readFloats(p, 4)
	for i, w := range []float32{11, 22, 33, 44} {
		if got[i] != w {
			t.Fatalf("after errors: pull = %v, want [11 22 33 44]", got)
		}
	}
	k.ok("kv_close", k.rc("kv_close", uint64(h)))
	wantErr(t, k, "use after close", k.rc("kv_pull", uint64(h), 1, uint64(p), 4), fmt.Sprintf("handle %d", h))
}

func randFloats(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

func mustArray(t *testing.T, v []float32) *kvcore.Array {
	t.Helper()
	a, err := kvcore.FromSlice(kvcore.CPU(0), v, len(v))
	if err != nil {
		t.Fatal(err)
	}
	return a
}
