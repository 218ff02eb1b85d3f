package compute

import (
	"testing"

	"github.com/webkv/webkv/kvcore/internal/kernels"
)

// The kernels mirror the step flags (StepParams itself is checked by the
// compiler: kparams converts it).
func TestKernelFlags(t *testing.T) {
	t.Parallel()
	for _, f := range []struct{ ours, theirs uint32 }{
		{FlagCentered, kernels.FlagCentered},
		{FlagBiasCorrection, kernels.FlagBiasCorrection},
		{FlagClipWeights, kernels.FlagClipWeights},
		{FlagBounds, kernels.FlagBounds},
	} {
		if f.ours != f.theirs {
			t.Errorf("flag %#x here is %#x in the kernels", f.ours, f.theirs)
		}
	}
}
