package compute

import (
	"fmt"
	"math"
)

// CompressionKind selects a gradient compression.
type CompressionKind uint8

// Gradient compressions (MXNet's set_gradient_compression types).
const (
	CompressNone CompressionKind = iota
	Compress2Bit
	Compress1Bit
)

func (c CompressionKind) String() string {
	switch c {
	case CompressNone:
		return "none"
	case Compress2Bit:
		return "2bit"
	case Compress1Bit:
		return "1bit"
	}
	return fmt.Sprintf("CompressionKind(%d)", uint8(c))
}

// PackedLen is the number of 32-bit words that n quantized values take:
// ceil(n/16) for 2bit, ceil(n/32) for 1bit, n uncompressed.
func (c CompressionKind) PackedLen(n int) int {
	switch c {
	case Compress2Bit:
		return (n + 15) / 16
	case Compress1Bit:
		return (n + 31) / 32
	}
	return n
}

// Compression is a gradient compression setting: MXNet's
// {'type': '2bit'|'1bit', 'threshold': t}.
type Compression struct {
	Kind      CompressionKind
	Threshold float32
}

// DefaultCompressionThreshold is MXNet's default threshold of
// set_gradient_compression.
const DefaultCompressionThreshold = 0.5

// ParseCompression validates MXNet's set_gradient_compression parameters
// {'type': typ, 'threshold': threshold}. typ is "2bit" or "1bit"
// (case-sensitive, as in MXNet). 2bit needs threshold > 0 (MXNet's CHECK_GT);
// 1bit takes any threshold, negative and 0 included. The threshold must be a
// finite float32 that is not NaN, because the kernels compare in float32.
func ParseCompression(typ string, threshold float64) (Compression, error) {
	var c Compression
	switch typ {
	case "2bit":
		c.Kind = Compress2Bit
	case "1bit":
		c.Kind = Compress1Bit
	default:
		return Compression{}, fmt.Errorf("compute: gradient compression: unknown type %q (want \"2bit\" or \"1bit\")", typ)
	}
	if math.IsNaN(threshold) || math.IsInf(threshold, 0) || math.Abs(threshold) > math.MaxFloat32 {
		return Compression{}, fmt.Errorf("compute: gradient compression %s: threshold %g is not a finite float32", typ, threshold)
	}
	c.Threshold = float32(threshold)
	if c.Kind == Compress2Bit && !(threshold > 0 && c.Threshold > 0) {
		return Compression{}, fmt.Errorf("compute: gradient compression 2bit: threshold must be greater than 0, got %g", threshold)
	}
	return c, nil
}

// Validate reports whether c is a compression a backend can run: a known
// kind and a threshold ParseCompression would accept. CompressNone is valid
// (it means no compression).
func (c Compression) Validate() error {
	switch c.Kind {
	case CompressNone:
		return nil
	case Compress2Bit, Compress1Bit:
	default:
		return fmt.Errorf("compute: gradient compression: unknown kind %v", c.Kind)
	}
	t := float64(c.Threshold)
	if math.IsNaN(t) || math.IsInf(t, 0) {
		return fmt.Errorf("compute: gradient compression %v: threshold %g is not finite", c.Kind, t)
	}
	if c.Kind == Compress2Bit && !(c.Threshold > 0) {
		return fmt.Errorf("compute: gradient compression 2bit: threshold must be greater than 0, got %g", t)
	}
	return nil
}

// String formats c as MXNet's parameters: "2bit(threshold=0.5)", or "none".
func (c Compression) String() string {
	if c.Kind == CompressNone {
		return "none"
	}
	return fmt.Sprintf("%v(threshold=%g)", c.Kind, c.Threshold)
}
