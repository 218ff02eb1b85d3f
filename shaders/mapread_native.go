//go:build cgo && !js

package shaders

import (
	"errors"
	"fmt"

	"github.com/cogentcore/webgpu/wgpu"
)

// mapForRead maps buf for reading; Poll drives the map callback.
func mapForRead(b *Backend, buf *wgpu.Buffer, size uint64) error {
	done := false
	status := wgpu.BufferMapAsyncStatusUnknown
	err := buf.MapAsync(wgpu.MapModeRead, 0, size, func(s wgpu.BufferMapAsyncStatus) {
		status = s
		done = true
	})
	if err != nil {
		return fmt.Errorf("shaders: mapping the readback buffer: %w", err)
	}
	for i := 0; !done && i < 1000; i++ {
		b.dev.Poll(true, nil)
	}
	if !done {
		return errors.New("shaders: readback buffer never mapped")
	}
	if status != wgpu.BufferMapAsyncStatusSuccess {
		return fmt.Errorf("shaders: mapping the readback buffer: %v", status)
	}
	return nil
}
