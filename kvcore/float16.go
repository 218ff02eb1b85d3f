package kvcore

import (
	"context"
	"fmt"

	"github.com/webkv/webkv/kvcore/internal/kernels"
)

// FromFloat16 returns a float32 array on dev holding the half precision
// values src (IEEE bits). webkv stores and updates every value in float32:
// float16 is an exchange format, converted at the edges (round to nearest
// even), as MXNet's multi_precision keeps a float32 master copy.
func FromFloat16(dev Device, src []uint16, shape ...int) (*Array, error) {
	f := make([]float32, len(src))
	kernels.F16ToF32(f, src)
	return FromSlice(dev, f, shape...)
}

// CopyToFloat16 waits for a and writes its values as half precision bits
// (rounded to nearest even; beyond the half range they become ±Inf).
func (a *Array) CopyToFloat16(ctx context.Context, dst []uint16) error {
	if len(dst) != a.n {
		return fmt.Errorf("kvcore: copy %d values into a float16 slice of %d: %w", a.n, len(dst), ErrShapeMismatch)
	}
	f := make([]float32, a.n)
	if err := a.CopyTo(ctx, f); err != nil {
		return err
	}
	kernels.F32ToF16(dst, f)
	return nil
}
