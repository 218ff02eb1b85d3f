//go:build cgo && !js

package shaders

import "github.com/cogentcore/webgpu/wgpu"

func writeBuffer(q *wgpu.Queue, buf *wgpu.Buffer, off uint64, data []byte) error {
	return q.WriteBuffer(buf, off, data)
}
