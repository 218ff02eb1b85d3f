//go:build js

package main

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"syscall/js"
	"unsafe"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/compute"
)

// work is the asynchronous part of a call: it runs in a goroutine and its
// result resolves the call's Promise (a Go value that js.ValueOf accepts, or
// a js.Value).
type work func() (any, error)

// promise returns a Promise settled by w, run in a new goroutine.
func promise(w work) js.Value {
	executor := js.FuncOf(func(this js.Value, args []js.Value) any {
		resolve, reject := args[0], args[1]
		go func() {
			v, err := runSafely(w)
			if err != nil {
				reject.Invoke(jsError(err))
				return
			}
			resolve.Invoke(v)
		}()
		return nil
	})
	p := js.Global().Get("Promise").New(executor)
	executor.Release()
	return p
}

// runSafely turns a panic (a bug, or a JS exception thrown into Go by a
// js.Value call) into an error, so a Promise never stays pending.
func runSafely(w work) (v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("webkv: internal error: %v", r)
		}
	}()
	return w()
}

// rejected returns a Promise already rejected with err.
func rejected(err error) js.Value {
	return js.Global().Get("Promise").Call("reject", jsError(err))
}

// codes name kvcore's error classes for JavaScript (Error.code), so pages can
// branch on them without parsing messages.
var codes = []struct {
	err  error
	code string
}{
	{kvcore.ErrUnknownKey, "UNKNOWN_KEY"},
	{kvcore.ErrDuplicateInit, "DUPLICATE_INIT"},
	{kvcore.ErrShapeMismatch, "SHAPE_MISMATCH"},
	{kvcore.ErrMixedKeys, "MIXED_KEYS"},
	{kvcore.ErrNilArray, "NO_VALUE"},
	{kvcore.ErrUnknownType, "UNKNOWN_TYPE"},
	{kvcore.ErrUnsupported, "UNSUPPORTED"},
	{kvcore.ErrClosed, "CLOSED"},
	{kvcore.ErrNoTransport, "NO_TRANSPORT"},
	{kvcore.ErrUnreachable, "UNREACHABLE"},
	{kvcore.ErrOrigin, "ORIGIN"},
	{kvcore.ErrEarlierRun, "EARLIER_RUN"},
	{kvcore.ErrWorkerCount, "WORKER_COUNT"},
	{kvcore.ErrAuth, "AUTH"},
	{kvcore.ErrBadCompression, "BAD_COMPRESSION"},
	{kvcore.ErrBadStates, "BAD_STATES"},
	{kvcore.ErrBadOptimizer, "BAD_OPTIMIZER"},
	{kvcore.ErrBadRowIDs, "BAD_ROW_IDS"},
	{errBadArgument, "BAD_ARGUMENT"},
	{errWebGPU, "WEBGPU"},
	{errNoWebGPU, "NO_WEBGPU"},
}

// errNoWebGPU marks a device store refused for want of WebGPU.
var errNoWebGPU = errors.New("no WebGPU")

// errBadArgument marks arguments this layer rejects before kvcore sees them
// (a value that is neither a Float32Array nor a GPUBuffer, say).
var errBadArgument = errors.New("bad argument")

// errWebGPU marks errors the browser's WebGPU reported.
var errWebGPU = errors.New("webgpu error")

// errorClass is webkv.js's WebKVError (api.setErrorClass); until it is
// set, errors are plain Errors named "WebKVError".
var errorClass js.Value

// debug is whether the page asked webkv to log to the console
// (load({debug: true})).
var debug bool

// jsError converts err into a WebKVError whose message is err's text
// (kvcore's messages name the operation, key and what was wrong) and whose
// code names the error class ("UNKNOWN_KEY", …; "ERROR" otherwise).
func jsError(err error) js.Value {
	code := "ERROR"
	for _, c := range codes {
		if errors.Is(err, c.err) {
			code = c.code
			break
		}
	}
	if code == "ERROR" && strings.Contains(err.Error(), "WebGPU error") {
		// package shaders reports error-scope failures as text (it has no
		// sentinel error yet).
		code = "WEBGPU"
	}
	if errorClass.Type() == js.TypeFunction {
		return errorClass.New(err.Error(), code)
	}
	e := js.Global().Get("Error").New(err.Error())
	e.Set("name", "WebKVError")
	e.Set("code", code)
	return e
}

func badArg(format string, a ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, a...), errBadArgument)
}

// toKey converts a JavaScript key: an integer number or a string.
func toKey(op string, v js.Value) (kvcore.Key, error) {
	switch v.Type() {
	case js.TypeString:
		return kvcore.StrKey(v.String()), nil
	case js.TypeNumber:
		f := v.Float()
		if f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return kvcore.Key{}, badArg("webkv: %s: key %v is not an integer", op, f)
		}
		return kvcore.IntKey(int(f)), nil
	}
	return kvcore.Key{}, badArg("webkv: %s: key must be an integer or a string, got %s", op, typeName(v))
}

// toShape converts an optional JavaScript shape (array of positive
// integers); undefined or null gives nil.
func toShape(op string, v js.Value) ([]int, error) {
	if v.IsUndefined() || v.IsNull() {
		return nil, nil
	}
	if !js.Global().Get("Array").Call("isArray", v).Bool() {
		return nil, badArg("webkv: %s: shape must be an array of integers, got %s", op, typeName(v))
	}
	n := v.Length()
	shape := make([]int, n)
	for i := range n {
		d := v.Index(i)
		if d.Type() != js.TypeNumber || d.Float() != math.Trunc(d.Float()) {
			return nil, badArg("webkv: %s: shape[%d] is not an integer", op, i)
		}
		shape[i] = d.Int()
	}
	return shape, nil
}

func typeName(v js.Value) string {
	switch v.Type() {
	case js.TypeObject:
		if c := v.Get("constructor"); c.Type() == js.TypeFunction {
			return c.Get("name").String()
		}
		return "object"
	default:
		return v.Type().String()
	}
}

func isInstance(v js.Value, class string) bool {
	c := js.Global().Get(class)
	return c.Type() == js.TypeFunction && v.Type() == js.TypeObject && v.InstanceOf(c)
}

// host holds the CPU buffers that values from JavaScript are copied into
// and that pulls are copied out of, pooled: a training step pushes and
// pulls the same sizes every time, and garbage of that size would make the
// single-threaded Go runtime collect every few steps (tens of ms each for
// large models, measured in Chromium). Bounded to 256 MiB of idle buffers.
var host = compute.NewCPU(&compute.CPUOptions{PoolBytes: 256 << 20})

// hostArray returns a zeroed array of the given shape on kvcore.CPU(0)
// whose buffer comes from host (release gives it back).
func hostArray(shape ...int) (*kvcore.Array, error) {
	b, err := host.Alloc(max(count(shape), 1))
	if err != nil {
		return nil, err
	}
	return kvcore.WrapBuffer(kvcore.CPU(0), b, shape...)
}

// hostFromJS copies a non-empty Float32Array into a new CPU buffer and
// returns it with its values.
func hostFromJS(v js.Value) (compute.Buffer, []float32) {
	n := v.Length()
	b, err := host.Alloc(n)
	if err != nil {
		panic(err) // n >= 1: the zero CPU does not fail
	}
	out := b.(*compute.CPUBuffer).Float32s()
	u8 := js.Global().Get("Uint8Array").New(v.Get("buffer"), v.Get("byteOffset"), n*4)
	js.CopyBytesToGo(unsafe.Slice((*byte)(unsafe.Pointer(&out[0])), n*4), u8)
	return b, out
}

// float32sToJS copies src into dst (a Float32Array of len(src)), or into a
// new Float32Array when dst is undefined, and returns it.
func float32sToJS(src []float32, dst js.Value) js.Value {
	if dst.IsUndefined() {
		dst = js.Global().Get("Float32Array").New(len(src))
	}
	if len(src) == 0 {
		return dst
	}
	u8 := js.Global().Get("Uint8Array").New(dst.Get("buffer"), dst.Get("byteOffset"), len(src)*4)
	js.CopyBytesToJS(u8, unsafe.Slice((*byte)(unsafe.Pointer(&src[0])), len(src)*4))
	return dst
}

// bytesFromJS copies a Uint8Array or ArrayBuffer into Go memory.
func bytesFromJS(op string, v js.Value) ([]byte, error) {
	switch {
	case isInstance(v, "ArrayBuffer"):
		v = js.Global().Get("Uint8Array").New(v)
	case isInstance(v, "Uint8Array"):
	default:
		return nil, badArg("webkv: %s: want a Uint8Array or ArrayBuffer, got %s", op, typeName(v))
	}
	b := make([]byte, v.Length())
	js.CopyBytesToGo(b, v)
	return b, nil
}

func bytesToJS(b []byte) js.Value {
	u := js.Global().Get("Uint8Array").New(len(b))
	js.CopyBytesToJS(u, b)
	return u
}

// optString reads opts[name] as a string ("" when absent).
func optString(opts js.Value, name string) (string, error) {
	if opts.IsUndefined() || opts.IsNull() {
		return "", nil
	}
	v := opts.Get(name)
	switch v.Type() {
	case js.TypeUndefined, js.TypeNull:
		return "", nil
	case js.TypeString:
		return v.String(), nil
	}
	return "", badArg("webkv: option %s must be a string, got %s", name, typeName(v))
}

// optBool reads opts[name] as a boolean (def when absent).
func optBool(opts js.Value, name string, def bool) (bool, error) {
	if opts.IsUndefined() || opts.IsNull() {
		return def, nil
	}
	v := opts.Get(name)
	switch v.Type() {
	case js.TypeUndefined, js.TypeNull:
		return def, nil
	case js.TypeBoolean:
		return v.Bool(), nil
	}
	return def, badArg("webkv: option %s must be a boolean, got %s", name, typeName(v))
}

// optNumber reads opts[name] as a number (def when absent).
func optNumber(opts js.Value, name string, def float64) (float64, error) {
	if opts.IsUndefined() || opts.IsNull() {
		return def, nil
	}
	v := opts.Get(name)
	switch v.Type() {
	case js.TypeUndefined, js.TypeNull:
		return def, nil
	case js.TypeNumber:
		return v.Float(), nil
	}
	return def, badArg("webkv: option %s must be a number, got %s", name, typeName(v))
}

func lower(s string) string { return strings.ToLower(s) }
