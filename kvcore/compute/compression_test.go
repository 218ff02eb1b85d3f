package compute_test

import (
	"math"
	"strings"
	"testing"

	"github.com/webkv/webkv/kvcore/compute"
)

func TestParseCompression(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		typ  string
		th   float64
		want compute.Compression
		err  string
	}{
		{"2bit", 0.5, compute.Compression{Kind: compute.Compress2Bit, Threshold: 0.5}, ""},
		{"1bit", -0.5, compute.Compression{Kind: compute.Compress1Bit, Threshold: -0.5}, ""},
		{"1bit", 0, compute.Compression{Kind: compute.Compress1Bit}, ""},
		{"2bit", 0, compute.Compression{}, "greater than 0"},
		{"2bit", -1, compute.Compression{}, "greater than 0"},
		{"2bit", 1e-50, compute.Compression{}, "greater than 0"},
		{"2bit", math.NaN(), compute.Compression{}, "not a finite"},
		{"1bit", math.Inf(1), compute.Compression{}, "not a finite"},
		{"1bit", 1e40, compute.Compression{}, "not a finite"},
		{"3bit", 0.5, compute.Compression{}, `"3bit"`},
		{"2BIT", 0.5, compute.Compression{}, `"2BIT"`},
		{"", 0.5, compute.Compression{}, `unknown type ""`},
	} {
		c, err := compute.ParseCompression(tc.typ, tc.th)
		if tc.err == "" {
			if err != nil || c != tc.want {
				t.Errorf("ParseCompression(%q, %v) = %v, %v; want %v", tc.typ, tc.th, c, err, tc.want)
			}
			if err := c.Validate(); err != nil {
				t.Errorf("Validate(%v): %v", c, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseCompression(%q, %v) error %v, want one containing %s", tc.typ, tc.th, err, tc.err)
		}
	}
	if err := (compute.Compression{Kind: compute.Compress2Bit}).Validate(); err == nil {
		t.Error("Validate accepted 2bit with threshold 0")
	}
	if err := (compute.Compression{Kind: 9, Threshold: 1}).Validate(); err == nil {
		t.Error("Validate accepted kind 9")
	}
	if s := (compute.Compression{Kind: compute.Compress2Bit, Threshold: 0.5}).String(); s != "2bit(threshold=0.5)" {
		t.Errorf("String() = %q", s)
	}
}
