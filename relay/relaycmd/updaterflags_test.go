//go:build !js && !wasip1

package relaycmd

import (
	"flag"
	"slices"
	"testing"
	"time"
)

// The -updater-* flags fill relay.UpdaterConfig.
func TestUpdaterFlags(t *testing.T) {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	get := updaterFlags(fs)
	h1, h2 := "sha256:aa", "bb"
	err := fs.Parse([]string{"-updater-refuse", "-updater-allow", h1 + "," + h2, "-updater-allow", "cc",
		"-updater-max-bytes", "1000", "-updater-memory-pages", "70000", "-updater-budget", "3s", "-updater-cache", "/x"})
	if err != nil {
		t.Fatal(err)
	}
	c := get()
	if !c.Refuse || !slices.Equal(c.Allow, []string{h1, h2, "cc"}) || c.MaxModuleBytes != 1000 || c.CallBudget != 3*time.Second || c.CacheDir != "/x" {
		t.Fatalf("config %+v", c)
	}
	// Pages above WebAssembly's 65536 stay above it (the relay refuses
	// them with a clear error) instead of wrapping around.
	if c.MemoryPages != 65537 {
		t.Fatalf("memory pages %d, want 65537", c.MemoryPages)
	}
}
