//go:build !js && !wasip1

package simd

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/wasm/js/simd/internal/wat"
)

// These tests run kernels.wasm natively in wazero (whose simd128 has the
// same IEEE semantics as a browser's), driven by the same Go code as in the
// browser (core.go) with every array inside wazero's memory, and compare
// each result with the CPU reference (compute.CPU) bit for bit on seeded
// random inputs. WEBKV_SEED replays a run.

// TestKernelsWasmUpToDate checks that kernels.wasm is what kernels.wat
// assembles to (run `go generate` in this directory after editing the text).
func TestKernelsWasmUpToDate(t *testing.T) {
	src, err := os.ReadFile("kernels.wat")
	if err != nil {
		t.Fatal(err)
	}
	got, err := wat.Assemble(src)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("kernels.wasm")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("kernels.wasm (%d bytes) is not what kernels.wat assembles to (%d bytes): run go generate ./wasm/js/simd", len(want), len(got))
	}
	t.Logf("kernels.wasm: %d bytes", len(want))
}

// TestKernelsMatchWabt compares the assembler with wabt's wat2wasm when one
// is installed (WEBKV_WAT2WASM, or wat2wasm on PATH): the bytes must be
// the same. Without wabt it is skipped (the assembler's output is then
// checked by the kernel tests alone).
func TestKernelsMatchWabt(t *testing.T) {
	tool := os.Getenv("WEBKV_WAT2WASM")
	if tool == "" {
		var err error
		if tool, err = exec.LookPath("wat2wasm"); err != nil {
			t.Skip("no wat2wasm (set WEBKV_WAT2WASM to compare the assembler with wabt)")
		}
	}
	out := filepath.Join(t.TempDir(), "k.wasm")
	if b, err := exec.Command(tool, "--enable-all", "kernels.wat", "-o", out).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", tool, err, b)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("kernels.wasm")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("kernels.wasm differs from wabt's output (%d vs %d bytes)", len(got), len(want))
	}
}

// --- a wazero engine ---

const testPages = 1024 // 64 MiB, never grown: slices into it stay valid

type wzEngine struct {
	ctx  context.Context
	mod  api.Module
	mem  []byte
	fns  [numFns]api.Function
	step [numStepKernels]api.Function
	next int // test arrays grow up from here
	top  int // the kernels' workspace grows down from here
}

// memModule is a module exporting a memory of testPages pages as "mem":
// it stands for the Go program whose memory the kernels import.
func memModule() []byte {
	b := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	mem := []byte{1, 0}
	for v := uint32(testPages); ; {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			mem = append(mem, c)
			break
		}
		mem = append(mem, c|0x80)
	}
	b = append(b, 5, byte(len(mem)))
	b = append(b, mem...)
	exp := []byte{1, 3, 'm', 'e', 'm', 2, 0}
	b = append(b, 7, byte(len(exp)))
	return append(b, exp...)
}

func newWazero(t testing.TB) *wzEngine {
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	t.Cleanup(func() { r.Close(ctx) })
	gomem, err := r.InstantiateWithConfig(ctx, memModule(), wazero.NewModuleConfig().WithName("go"))
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile("kernels.wasm")
	if err != nil {
		t.Fatal(err)
	}
	mod, err := r.InstantiateWithConfig(ctx, bin, wazero.NewModuleConfig().WithName("kernels"))
	if err != nil {
		t.Fatal(err)
	}
	e := &wzEngine{ctx: ctx, mod: mod, next: 64}
	e.mem, _ = gomem.Memory().Read(0, gomem.Memory().Size())
	e.top = len(e.mem)
	for f := range numFns {
		if fnNames[f] != "" {
			if e.fns[f] = mod.ExportedFunction(fnNames[f]); e.fns[f] == nil {
				t.Fatalf("kernels.wasm has no export %q", fnNames[f])
			}
		}
	}
	for i, name := range stepNames {
		if e.step[i] = mod.ExportedFunction(name); e.step[i] == nil {
			t.Fatalf("kernels.wasm has no export %q", name)
		}
	}
	return e
}

func (e *wzEngine) addr(p unsafe.Pointer) uint32 {
	off := uintptr(p) - uintptr(unsafe.Pointer(&e.mem[0]))
	if off >= uintptr(len(e.mem)) {
		panic("simd test: a slice outside wazero's memory was passed to a kernel")
	}
	return uint32(off)
}

func (e *wzEngine) call(f fn, step int, args ...float64) {
	fun := e.fns[f]
	if f == fnStep {
		fun = e.step[step]
	}
	types := fun.Definition().ParamTypes()
	if len(types) != len(args) {
		panic(fmt.Sprintf("simd test: %s takes %d arguments, got %d", fun.Definition().Name(), len(types), len(args)))
	}
	params := make([]uint64, len(args))
	for i, a := range args {
		switch types[i] {
		case api.ValueTypeI32:
			params[i] = uint64(uint32(int64(a)))
		case api.ValueTypeF32:
			params[i] = api.EncodeF32(float32(a))
		default:
			panic("simd test: unexpected parameter type")
		}
	}
	if _, err := fun.Call(e.ctx, params...); err != nil {
		panic(fmt.Sprintf("simd test: %s: %v", fun.Definition().Name(), err))
	}
}

// alloc is the kernels' workspace, taken from the top of the memory down
// and kept; the tests' arrays come from the bottom up (array), and each
// case gives its arrays back by resetting next.
func (e *wzEngine) alloc(n int) []float32 {
	off := (e.top - 4*n) &^ 15
	if off < e.next {
		panic("simd test: wazero memory exhausted")
	}
	e.top = off
	s := unsafe.Slice((*float32)(unsafe.Pointer(&e.mem[off])), n)
	clear(s)
	return s
}

// array returns a zeroed test array of n values in the module's memory.
func (e *wzEngine) array(n int) []float32 {
	off := (e.next + 15) &^ 15
	if off+4*n > e.top {
		panic("simd test: wazero memory exhausted")
	}
	e.next = off + 4*n
	s := unsafe.Slice((*float32)(unsafe.Pointer(&e.mem[off])), n)
	clear(s)
	return s
}

// --- inputs and the reference ---

func compare(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	bad, first := 0, -1
	for i := range want {
		if !sameBits(got[i], want[i]) {
			if first < 0 {
				first = i
			}
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("%s: %d of %d values differ from the reference; first at %d: got %v (%#08x), want %v (%#08x)",
			what, bad, len(want), first, got[first], math.Float32bits(got[first]), want[first], math.Float32bits(want[first]))
	}
}

var testLens = []int{1, 3, 4, 5, 7, 8, 33, 1023, 2048, 2051, 4099, 9001, 20000}

// ref runs f on the CPU backend with buffers holding copies of ins and
// returns their contents afterwards.
func ref(t *testing.T, ins [][]float32, f func(be compute.Backend, bufs []compute.Buffer) error) [][]float32 {
	t.Helper()
	be := compute.NewCPU(nil)
	bufs := make([]compute.Buffer, len(ins))
	for i, in := range ins {
		b, err := be.Alloc(len(in))
		if err != nil {
			t.Fatal(err)
		}
		if err := be.Write(b, 0, in); err != nil {
			t.Fatal(err)
		}
		bufs[i] = b
	}
	if err := f(be, bufs); err != nil {
		t.Fatalf("reference: %v", err)
	}
	out := make([][]float32, len(ins))
	for i, b := range bufs {
		out[i] = make([]float32, b.Len())
		if err := be.Read(b, 0, out[i]); err != nil {
			t.Fatal(err)
		}
		be.Free(b)
	}
	return out
}

// --- tests ---

func TestKernelsFill(t *testing.T) {
	e := newWazero(t)
	k := newKernels(e)
	r := rand.New(rand.NewPCG(testSeed(t), 1))
	for _, n := range testLens {
		d := e.array(n)
		values(r, d, 1, false)
		v := r.Float32()
		k.fill(d, v)
		want := make([]float32, n)
		for i := range want {
			want[i] = v
		}
		compare(t, fmt.Sprintf("fill n=%d", n), d, want)
	}
}

func TestKernelsReduce(t *testing.T) {
	e := newWazero(t)
	k := newKernels(e)
	r := rand.New(rand.NewPCG(testSeed(t), 2))
	for _, n := range testLens {
		for _, nin := range []int{1, 2, 3, 4, 5, 6, 7, 8, 11, 16} {
			for _, alias := range []bool{false, true} {
				scale := float32(1)
				if r.IntN(2) == 0 {
					scale = r.Float32() * 2
				}
				ins := make([][]float32, nin)
				host := make([][]float32, nin+1)
				for i := range ins {
					ins[i] = e.array(n)
					values(r, ins[i], 1, r.IntN(4) == 0)
					host[i] = append([]float32(nil), ins[i]...)
				}
				d := e.array(n)
				host[nin] = make([]float32, n)
				if alias {
					d = ins[0]
				}
				want := ref(t, host, func(be compute.Backend, b []compute.Buffer) error {
					dst := b[nin]
					if alias {
						dst = b[0]
					}
					return be.Reduce(dst, b[:nin], scale)
				})
				w := want[nin]
				if alias {
					w = want[0]
				}
				k.reduce(d, ins, scale)
				compare(t, fmt.Sprintf("reduce n=%d inputs=%d scale=%v alias=%v", n, nin, scale, alias), d, w)
			}
		}
	}
}

func TestKernelsStep(t *testing.T) {
	testSteps(t, false)
}

// TestKernelsReduceStep checks the fused reduce+step against Reduce then
// Step of the reference.
func TestKernelsReduceStep(t *testing.T) {
	testSteps(t, true)
}

func testSteps(t *testing.T, fused bool) {
	e := newWazero(t)
	k := newKernels(e)
	salt := uint64(3)
	if fused {
		salt = 4
	}
	r := rand.New(rand.NewPCG(testSeed(t), salt))
	for _, c := range stepCases(r) {
		for _, n := range testLens {
			mark := e.next
			nin := 1
			if fused {
				nin = 1 + r.IntN(6)
			}
			w := e.array(n)
			values(r, w, 1, false)
			ins := make([][]float32, nin)
			for i := range ins {
				ins[i] = e.array(n)
				values(r, ins[i], 0.5, r.IntN(3) == 0)
			}
			states := make([][]float32, c.states)
			for i := range states {
				states[i] = e.array(n)
			}
			stateInit(r, c, states)
			scale := float32(1)
			if fused && r.IntN(2) == 0 {
				scale = 1 / float32(nin)
			}
			host := [][]float32{append([]float32(nil), w...)}
			for _, s := range states {
				host = append(host, append([]float32(nil), s...))
			}
			for _, in := range ins {
				host = append(host, append([]float32(nil), in...))
			}
			host = append(host, make([]float32, n)) // the reference's merge buffer
			p := c.p
			want := ref(t, host, func(be compute.Backend, b []compute.Buffer) error {
				wb, sb, ib, mb := b[0], b[1:1+c.states], b[1+c.states:1+c.states+nin], b[len(b)-1]
				g := ib[0]
				if fused {
					if err := be.Reduce(mb, ib, scale); err != nil {
						return err
					}
					g = mb
				}
				return be.Step(c.kind, &p, wb, g, sb)
			})
			var err error
			if fused {
				err = k.reduceStep(c.kind, &p, w, ins, scale, states)
			} else {
				err = k.step(c.kind, &p, w, ins[0], states)
			}
			if err != nil {
				t.Fatalf("%s n=%d: %v", c.name, n, err)
			}
			what := fmt.Sprintf("%s n=%d inputs=%d", c.name, n, nin)
			compare(t, what+": weight", w, want[0])
			for i, s := range states {
				compare(t, fmt.Sprintf("%s: state %d", what, i), s, want[1+i])
			}
			e.next = mark
		}
	}
}

func TestKernelsQuantize(t *testing.T) {
	e := newWazero(t)
	k := newKernels(e)
	r := rand.New(rand.NewPCG(testSeed(t), 5))
	comps := []compute.Compression{
		{Kind: compute.Compress2Bit, Threshold: 0.5},
		{Kind: compute.Compress2Bit, Threshold: 0.05 + r.Float32()},
		{Kind: compute.Compress1Bit, Threshold: 0},
		{Kind: compute.Compress1Bit, Threshold: r.Float32() - 0.5},
	}
	for _, c := range comps {
		for _, n := range append(testLens, 15, 16, 17, 31, 32, 63, 65) {
			mark := e.next
			g := e.array(n)
			res := e.array(n)
			out := e.array(c.Kind.PackedLen(n))
			deq := e.array(n)
			hostR := make([]float32, n)
			for round := range 3 {
				values(r, g, 1, round == 2)
				// Values on the thresholds exactly, where >= and > differ.
				for i := 0; i < n; i += 7 {
					g[i] = c.Threshold - res[i]
				}
				hostOut := make([]float32, len(out))
				hostG := append([]float32(nil), g...)
				refQuantize(t, c, hostOut, hostG, hostR)
				k.quantize(c, out, g, res)
				what := fmt.Sprintf("%v n=%d round %d", c, n, round)
				compareWords(t, what+": words", out, hostOut)
				compare(t, what+": residual", res, hostR)
				hostDeq := make([]float32, n)
				refDequantize(t, c, hostDeq, hostOut)
				k.dequantize(c, deq, out)
				compare(t, what+": dequantized", deq, hostDeq)
			}
			// Every code, including 01 (never written, reads as 0).
			for i := range out {
				out[i] = math.Float32frombits(r.Uint32())
			}
			hostDeq := make([]float32, n)
			refDequantize(t, c, hostDeq, out)
			k.dequantize(c, deq, out)
			compare(t, fmt.Sprintf("%v n=%d: dequantized random words", c, n), deq, hostDeq)
			e.next = mark
		}
	}
}

// refQuantize runs the reference quantizer on copies of out, g and r and
// leaves its results in them.
func refQuantize(t *testing.T, c compute.Compression, out, g, r []float32) {
	t.Helper()
	res := ref(t, [][]float32{out, g, r}, func(be compute.Backend, b []compute.Buffer) error {
		return be.Quantize(c, b[1], b[2], b[0])
	})
	copy(out, res[0])
	copy(r, res[2])
}

// refDequantize runs the reference dequantizer.
func refDequantize(t *testing.T, c compute.Compression, out, in []float32) {
	t.Helper()
	res := ref(t, [][]float32{out, in}, func(be compute.Backend, b []compute.Buffer) error {
		return be.Dequantize(c, b[1], b[0])
	})
	copy(out, res[0])
}

func compareWords(t *testing.T, what string, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: word %d is %#08x, want %#08x", what, i, math.Float32bits(got[i]), math.Float32bits(want[i]))
		}
	}
}
