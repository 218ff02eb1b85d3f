//go:build !js && !wasip1

package updatertest

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
)

// TestReproducible: the same source built in another checkout (another
// directory) with an empty build cache (so nothing is reused: the standard
// library, the SDK and the module are compiled and linked again) gives the
// same bytes, so an operator can allow-list the hash of a module
// built from reviewed source (relay -updater-allow) and a user's build of
// that source matches it.
func TestReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the standard library for wasip1 from scratch (half a minute); left out under -short")
	}
	a := Build(t, "mxtest")
	root := t.TempDir()
	for _, f := range []string{"go.mod", "go.sum", "wasm/updater/doc.go", "wasm/updater/updater.go", "wasm/updater/kernels.go",
		"wasm/updater/exports_wasip1.go", "wasm/updater/examples/mxtest/main.go"} {
		b, err := os.ReadFile(filepath.Join(Root(), f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := BuildIn(root, packages["mxtest"], []string{"GOCACHE=" + t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatalf("two builds of mxtest differ: sha256 %x and %x", sha256.Sum256(a), sha256.Sum256(b))
	}
	t.Logf("both builds: sha256:%x", sha256.Sum256(a))
}
