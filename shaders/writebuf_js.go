//go:build js

package shaders

import (
	"syscall/js"
	"unsafe"

	"github.com/cogentcore/webgpu/wgpu"
)

// writeBuffer is Queue.WriteBuffer without the binding's race: its
// jsx.BytesToJS fetches wasm memory's ArrayBuffer into a Go js.Value, and
// allocating that value can grow wasm memory, which detaches the very
// ArrayBuffer just fetched ("Cannot perform Construct on a detached
// ArrayBuffer", or writeBuffer's "Number of bytes to write is too large").
// Here JavaScript reads mem.buffer itself, when no Go code can run.
var jsWriteBuffer = js.Global().Get("Function").New("q", "b", "off", "mem", "ptr", "n",
	"q.writeBuffer(b, off, new Uint8Array(mem.buffer, ptr, n));")

type jsHandle struct{ v js.Value }

// Checked layouts: wgpu.Buffer and wgpu.Queue are one js.Value on js.
var _ [unsafe.Sizeof(wgpu.Buffer{}) - unsafe.Sizeof(jsHandle{})]byte
var _ [unsafe.Sizeof(jsHandle{}) - unsafe.Sizeof(wgpu.Buffer{})]byte
var _ [unsafe.Sizeof(wgpu.Queue{}) - unsafe.Sizeof(jsHandle{})]byte
var _ [unsafe.Sizeof(jsHandle{}) - unsafe.Sizeof(wgpu.Queue{})]byte

func writeBuffer(q *wgpu.Queue, buf *wgpu.Buffer, off uint64, data []byte) error {
	mem := js.Global().Get("wasm").Get("instance").Get("exports").Get("mem")
	jsWriteBuffer.Invoke((*jsHandle)(unsafe.Pointer(q)).v, (*jsHandle)(unsafe.Pointer(buf)).v,
		off, mem, uintptr(unsafe.Pointer(unsafe.SliceData(data))), len(data))
	return nil
}
