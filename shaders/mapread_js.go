//go:build js

package shaders

import (
	"fmt"
	"unsafe"

	"github.com/cogentcore/webgpu/wgpu"
)

// mapForRead awaits GPUBuffer.mapAsync itself: the binding's MapAsync
// reports success even when the promise is rejected, and its await (package
// jsx) logs through log/slog, which the browser runtime does not otherwise
// link (see RATIONALE.md, "Why is the browser runtime small?").
func mapForRead(b *Backend, buf *wgpu.Buffer, size uint64) error {
	v, ok := await((*jsHandle)(unsafe.Pointer(buf)).v.Call("mapAsync", uint32(wgpu.MapModeRead), 0, size))
	if !ok {
		return fmt.Errorf("shaders: mapping the readback buffer: %s", jsString(v))
	}
	return nil
}
