package shaders

import (
	"embed"
	"fmt"
	"strings"
	"sync"

	"github.com/webkv/webkv/kvcore/compute"
)

// The kernels are templates over WGSL (text/template's syntax, expanded by
// wgsltmpl.go), so that one source gives the
// vec4 and the scalar variant of a kernel (V = vec4<f32> or f32: WGSL's
// arithmetic and built-ins are component-wise, so the bodies are the same)
// and the reduce kernel for any number of inputs. WGSL has no preprocessor;
// this is the smallest thing that keeps one source per kernel.

//go:embed *.wgsl
var wgslFiles embed.FS

var (
	tmplOnce sync.Once
	tmpls    *tmplSet
	tmplErr  error
)

func templates() (*tmplSet, error) {
	tmplOnce.Do(func() {
		tmpls, tmplErr = parseTemplates(wgslFiles, "*.wgsl")
	})
	return tmpls, tmplErr
}

// access is how a kernel binds a storage buffer.
type access byte

const (
	accRead  access = 'r' // var<storage, read>
	accWrite access = 'w' // var<storage, read_write>
)

// kernel names one compiled pipeline: its WGSL file, the template data and
// the access of storage bindings 1..len(bind) (binding 0 is the uniform).
type kernel struct {
	name string // key(), computed once for cached kernels
	file string
	vec4 bool
	data map[string]any
	bind []access
}

// key identifies the pipeline built from k.
func (k *kernel) key() string {
	if k.name != "" {
		return k.name
	}
	return fmt.Sprintf("%s|%v|%v|%s", k.file, k.vec4, k.data, string(accessBytes(k.bind)))
}

func accessBytes(a []access) []byte {
	b := make([]byte, len(a))
	for i, x := range a {
		b[i] = byte(x)
	}
	return b
}

// source returns the full WGSL of k: the common prelude, then the kernel.
// With loop, each invocation walks the array in steps of the grid (a
// dispatch capped by Options.MaxWorkgroups); without, it handles one element
// and the grid must cover the array (see "each" in common.wgsl).
func (k *kernel) source(loop bool) (string, error) {
	t, err := templates()
	if err != nil {
		return "", fmt.Errorf("shaders: parsing embedded WGSL: %w", err)
	}
	data := map[string]any{"V": "f32", "Vec4": k.vec4, "Loop": loop}
	if k.vec4 {
		data["V"] = "vec4<f32>"
	}
	for n, v := range k.data {
		data[n] = v
	}
	var sb strings.Builder
	if err := t.execute(&sb, "common.wgsl", data); err != nil {
		return "", fmt.Errorf("shaders: common.wgsl: %w", err)
	}
	sb.WriteString("\n")
	if err := t.execute(&sb, k.file, data); err != nil {
		return "", fmt.Errorf("shaders: %s: %w", k.file, err)
	}
	return sb.String(), nil
}

type srcBinding struct{ I, B int }

// reduceKernel sums k inputs (1..7) into dst; with acc, dst is the leftmost
// operand (k may then be 0: dst = dst * scale). Without scaled the sum is
// not multiplied by P.scale (the caller's scale is 1).
func makeReduceKernel(k int, acc, vec4, scaled bool) *kernel {
	srcs := make([]srcBinding, k)
	bind := make([]access, 0, k+1)
	for i := range srcs {
		srcs[i] = srcBinding{I: i, B: i + 1}
		bind = append(bind, accRead)
	}
	bind = append(bind, accWrite)
	var rest []srcBinding
	if k > 1 {
		rest = srcs[1:]
	}
	return &kernel{file: "reduce.wgsl", vec4: vec4, bind: bind,
		data: map[string]any{"Srcs": srcs, "Rest": rest, "DstB": k + 1, "Acc": acc, "K": k, "Scaled": scaled}}
}

func makeFillKernel(vec4 bool) *kernel {
	return &kernel{file: "fill.wgsl", vec4: vec4, bind: []access{accWrite}, data: map[string]any{}}
}

func makeQuantizeKernel(per int) *kernel {
	return &kernel{file: "quantize.wgsl", bind: []access{accRead, accWrite, accWrite},
		data: map[string]any{"Per": per}}
}

func makeDequantizeKernel(per int) *kernel {
	return &kernel{file: "dequantize.wgsl", bind: []access{accRead, accWrite},
		data: map[string]any{"Per": per}}
}

// optFiles maps an element-wise optimizer to its kernel file.
var optFiles = map[compute.OptKind]string{
	compute.OptSGD:      "opt_sgd.wgsl",
	compute.OptNAG:      "opt_nag.wgsl",
	compute.OptAdam:     "opt_adam.wgsl",
	compute.OptAdamW:    "opt_adamw.wgsl",
	compute.OptAdaGrad:  "opt_adagrad.wgsl",
	compute.OptRMSProp:  "opt_rmsprop.wgsl",
	compute.OptAdaDelta: "opt_adadelta.wgsl",
	compute.OptSignum:   "opt_signum.wgsl",
	compute.OptFTRL:     "opt_ftrl.wgsl",
}

// optKernel is the fused kernel of an element-wise optimizer with ns
// states. With ins > 0 the gradient is not one buffer but scale times the
// sum of ins inputs (ReduceStep). NAG without momentum is plain SGD, as in
// MXNet. rescale false promises rescale_grad 1 and no gradient clipping
// (see plainGrad); only Adam has a variant for it, the others ignore it.
// scaled false leaves out the multiply of the inputs' sum by P.scale (1).
func makeOptKernel(kind compute.OptKind, ns, ins int, vec4, rescale, scaled bool) (*kernel, error) {
	if kind == compute.OptNAG && ns == 0 {
		kind = compute.OptSGD
	}
	file, ok := optFiles[kind]
	if !ok {
		return nil, fmt.Errorf("shaders: no kernel for optimizer %v", kind)
	}
	data, bind := gradData(ins, scaled)
	states := make([]srcBinding, ns)
	for i := range states {
		states[i] = srcBinding{I: i, B: len(bind) + 1}
		bind = append(bind, accWrite)
	}
	data["NS"], data["States"], data["Rescale"] = ns, states, rescale
	return &kernel{file: file, vec4: vec4, bind: bind, data: data}, nil
}

// gradData is the template data and bindings (weight, then the gradient
// buffer or the ins inputs) of a kernel that reads a gradient.
func gradData(ins int, scaled bool) (map[string]any, []access) {
	bind := []access{accWrite}
	var in, rest []srcBinding
	for i := range ins {
		in = append(in, srcBinding{I: i, B: i + 2})
		bind = append(bind, accRead)
	}
	if ins > 1 {
		rest = in[1:]
	}
	if ins == 0 {
		bind = append(bind, accRead)
	}
	return map[string]any{"Ins": in, "InsRest": rest, "Scaled": scaled}, bind
}

// lambKernel is phase 1, 2 or 3 of LAMB (see lamb.wgsl); phase 1 reads
// the gradient as optKernel does.
func makeLambKernel(phase, ins int, vec4 bool) *kernel {
	data := map[string]any{"Phase": phase}
	var bind []access
	switch phase {
	case 1:
		data, bind = gradData(ins, true)
		data["Phase"] = 1
		data["SB"], data["SB1"], data["SB2"] = len(bind)+1, len(bind)+2, len(bind)+3
		bind = append(bind, accWrite, accWrite, accWrite)
	case 2:
		bind = []access{accWrite}
		vec4 = false
	default:
		bind = []access{accWrite, accRead, accRead, accRead}
	}
	return &kernel{file: "lamb.wgsl", vec4: vec4, bind: bind, data: data}
}

// Kernels are immutable once built, so every variant is made once per
// process: a dispatch then costs a map lookup, not template data and a
// formatted key.

type kernelID struct {
	ctor       uint8
	vec4       bool
	a, b, c, d int
}

var kernelCache sync.Map // kernelID -> *kernel

func cachedKernel(id kernelID, mk func() (*kernel, error)) (*kernel, error) {
	if k, ok := kernelCache.Load(id); ok {
		return k.(*kernel), nil
	}
	k, err := mk()
	if err != nil {
		return nil, err
	}
	k.name = k.key()
	kernelCache.Store(id, k)
	return k, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// cached is cachedKernel for makers that cannot fail.
func cached(id kernelID, mk func() *kernel) *kernel {
	k, _ := cachedKernel(id, func() (*kernel, error) { return mk(), nil }) // mk returns no error, so neither does cachedKernel
	return k
}

func reduceKernel(k int, acc, vec4, scaled bool) *kernel {
	return cached(kernelID{1, vec4, k, b2i(acc), b2i(scaled), 0}, func() *kernel { return makeReduceKernel(k, acc, vec4, scaled) })
}

func fillKernel(vec4 bool) *kernel {
	return cached(kernelID{2, vec4, 0, 0, 0, 0}, func() *kernel { return makeFillKernel(vec4) })
}

func quantizeKernel(per int) *kernel {
	return cached(kernelID{3, false, per, 0, 0, 0}, func() *kernel { return makeQuantizeKernel(per) })
}

func dequantizeKernel(per int) *kernel {
	return cached(kernelID{4, false, per, 0, 0, 0}, func() *kernel { return makeDequantizeKernel(per) })
}

func optKernel(kind compute.OptKind, ns, ins int, vec4, rescale, scaled bool) (*kernel, error) {
	if kind != compute.OptAdam {
		rescale = true // one variant
	}
	if ins == 0 {
		scaled = false // no inputs' sum
	}
	return cachedKernel(kernelID{5, vec4, int(kind), ns, ins, b2i(rescale) | b2i(scaled)<<1}, func() (*kernel, error) {
		return makeOptKernel(kind, ns, ins, vec4, rescale, scaled)
	})
}

func lambKernel(phase, ins int, vec4 bool) *kernel {
	return cached(kernelID{6, vec4, phase, ins, 0, 0}, func() *kernel { return makeLambKernel(phase, ins, vec4) })
}
