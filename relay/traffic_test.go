package relay

import "testing"

// TestFrameBytes checks the browser's count of a websocket frame against
// RFC 6455 §5.2's header lengths, at each boundary.
func TestFrameBytes(t *testing.T) {
	for _, c := range []struct {
		n      int
		masked bool
		want   int64
	}{
		{0, false, 2}, {125, false, 127}, {126, false, 130}, {65535, false, 65539},
		{65536, false, 65546}, {0, true, 6}, {125, true, 131}, {126, true, 134}, {1 << 20, true, 1<<20 + 14},
	} {
		if got := frameBytes(c.n, c.masked); got != c.want {
			t.Errorf("frameBytes(%d, masked %v) = %d, want %d", c.n, c.masked, got, c.want)
		}
	}
}
