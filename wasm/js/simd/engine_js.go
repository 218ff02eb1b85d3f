//go:build js

package simd

import (
	"fmt"
	"syscall/js"
	"unsafe"
)

// jsEngine calls the kernels through syscall/js. The module imported this
// program's linear memory, so a Go pointer is the module's address of the
// same bytes.
type jsEngine struct {
	fns  [numFns]js.Value
	step [numStepKernels]js.Value
	args []any
}

func newJSEngine(exports js.Value) (*jsEngine, error) {
	if exports.Type() != js.TypeObject {
		return nil, fmt.Errorf("simd: the kernels' exports are %s, not an object", exports.Type())
	}
	e := &jsEngine{}
	get := func(name string) (js.Value, error) {
		v := exports.Get(name)
		if v.Type() != js.TypeFunction {
			return js.Value{}, fmt.Errorf("simd: the kernels module has no function %q (a webkv-simd.wasm of another version?)", name)
		}
		return v, nil
	}
	for f := range numFns {
		if fnNames[f] == "" {
			continue
		}
		v, err := get(fnNames[f])
		if err != nil {
			return nil, err
		}
		e.fns[f] = v
	}
	for i, name := range stepNames {
		v, err := get(name)
		if err != nil {
			return nil, err
		}
		e.step[i] = v
	}
	return e, nil
}

func (e *jsEngine) addr(p unsafe.Pointer) uint32 { return uint32(uintptr(p)) }

// call is only made under kernels.mu, so args can be reused.
func (e *jsEngine) call(f fn, step int, args ...float64) {
	v := e.fns[f]
	if f == fnStep {
		v = e.step[step]
	}
	e.args = e.args[:0]
	for _, a := range args {
		e.args = append(e.args, a)
	}
	v.Invoke(e.args...)
}

func (e *jsEngine) alloc(n int) []float32 { return make([]float32, n) }
