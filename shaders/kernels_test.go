package shaders

import (
	"strconv"
	"strings"
	"testing"

	"github.com/webkv/webkv/kvcore/compute"
)

// TestKernelSources expands every kernel template the backend can ask for
// (no GPU needed, so it runs in every build) and checks that each has one
// entry point and declares exactly the bindings its layout describes.
func TestKernelSources(t *testing.T) {
	ks := allKernels(t)
	for _, k := range ks {
		for _, loop := range []bool{false, true} {
			checkSource(t, k, loop)
		}
	}
	t.Logf("%d kernel variants expand, each with and without the grid-stride loop", len(ks))
}

// allKernels is every kernel variant the backend can ask for.
func allKernels(t *testing.T) []*kernel {
	var ks []*kernel
	for _, vec4 := range []bool{false, true} {
		for k := 0; k <= 7; k++ {
			for _, scaled := range []bool{false, true} {
				ks = append(ks, reduceKernel(k, true, vec4, scaled))
				if k > 0 {
					ks = append(ks, reduceKernel(k, false, vec4, scaled))
				}
			}
		}
		ks = append(ks, fillKernel(vec4))
		for kind := compute.OptSGD; kind < compute.OptLAMB; kind++ {
			for ns := 0; ns <= 3; ns++ {
				for ins := 0; ins <= 5; ins++ {
					for _, rescale := range []bool{false, true} {
						for _, scaled := range []bool{false, true} {
							k, err := optKernel(kind, ns, ins, vec4, rescale, scaled)
							if err != nil {
								t.Fatal(err)
							}
							ks = append(ks, k)
						}
					}
				}
			}
		}
		for phase := 1; phase <= 3; phase++ {
			for ins := 0; ins <= 4; ins++ {
				ks = append(ks, lambKernel(phase, ins, vec4))
			}
		}
	}
	for _, per := range []int{16, 32} {
		ks = append(ks, quantizeKernel(per), dequantizeKernel(per))
	}
	if _, err := optKernel(compute.OptLAMB, 2, 0, false, true, true); err == nil {
		t.Error("optKernel accepted LAMB, which has its own three-phase kernel")
	}
	return ks
}

func checkSource(t *testing.T, k *kernel, loop bool) {
	t.Helper()
	{
		src, err := k.source(loop)
		if err != nil {
			t.Fatalf("%s: %v", k.key(), err)
		}
		// Every kernel but LAMB's one-workgroup phase 2 has an element
		// loop: the grid-stride one exactly when asked for.
		looped := strings.Contains(src, "for (var i = ")
		plain := strings.Contains(src, "if (i0 >= n)") || strings.Contains(src, "if (i < P.n)")
		if k.data["Phase"] != 2 && (looped != loop || plain == loop) {
			t.Fatalf("%s: grid-stride loop %v wanted, got loop %v, one-element form %v; source:\n%s", k.key(), loop, looped, plain, src)
		}
		if n := strings.Count(src, "@compute"); n != 1 {
			t.Fatalf("%s: %d entry points", k.key(), n)
		}
		if strings.Contains(src, "<no value>") {
			t.Fatalf("%s: template left a hole:\n%s", k.key(), src)
		}
		// binding 0 is the uniform; 1..len(bind) the storage buffers.
		if n := strings.Count(src, "@binding("); n != len(k.bind)+1 {
			t.Fatalf("%s: %d bindings declared, layout has %d:\n%s", k.key(), n, len(k.bind)+1, src)
		}
		for i, a := range k.bind {
			decl := "var<storage, read>"
			if a == accWrite {
				decl = "var<storage, read_write>"
			}
			want := "@binding(" + strconv.Itoa(i+1) + ") " + decl
			if !strings.Contains(src, want) {
				t.Fatalf("%s: binding %d is not declared as %q:\n%s", k.key(), i+1, decl, src)
			}
		}
	}
}
