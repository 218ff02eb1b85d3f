//go:build !js && !wasip1

package tests

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestShadersInBrowser builds package shaders' tests for GOOS=js and runs
// the js ones (backend_js_test.go: the conformance suite and error scopes)
// in headless Chromium on its WebGPU (SwiftShader), so the browser build of
// the dispatch code is checked for real, not only compiled. Without
// Chromium it fails, unless WEBKV_ALLOW_NO_GPU=1.
func TestShadersInBrowser(t *testing.T) {
	integration(t)
	root := brRepoRoot(t)
	dir := t.TempDir()
	build := exec.Command("go", "test", "-c", "-o", filepath.Join(dir, "shaders.test.wasm"), "./shaders")
	build.Dir = root
	build.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the js tests: %v\n%s", err, out)
	}
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	execJS, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(goroot)), "lib", "wasm", "wasm_exec.js"))
	if err != nil {
		t.Fatal(err)
	}
	seed := os.Getenv("WEBKV_SEED")
	page := fmt.Sprintf(shadersPage, seed)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, page) })
	mux.HandleFunc("/wasm_exec.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		w.Write(execJS)
	})
	mux.HandleFunc("/shaders.test.wasm", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/wasm")
		http.ServeFile(w, r, filepath.Join(dir, "shaders.test.wasm"))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	ctx := brBrowser(t)
	if err := brNavigate(ctx, srv.URL); err != nil {
		t.Fatal(err)
	}
	_, err = chromedp.Run(ctx, chromedp.Poll[bool]("window.__done === true",
		chromedp.WithPollingInterval(time.Second), chromedp.WithPollingTimeout(8*time.Minute)))
	lines, lerr := chromedp.Run(ctx, chromedp.Evaluate[string](`window.__lines.join("\n")`))
	if err != nil || lerr != nil {
		t.Fatalf("running the js tests in Chromium: %v, %v\n%s", err, lerr, lines)
	}
	t.Logf("output of the GOOS=js tests in Chromium:\n%s", lines)
	passed := false
	for _, l := range strings.Split(lines, "\n") {
		if strings.TrimSpace(l) == "PASS" {
			passed = true
		}
		if strings.HasPrefix(strings.TrimSpace(l), "--- FAIL") || strings.TrimSpace(l) == "FAIL" || strings.HasPrefix(l, "LOADER ERROR") {
			passed = false
			break
		}
	}
	if !passed {
		t.Fatal("the GOOS=js tests did not pass in Chromium (output above)")
	}
	if !strings.Contains(lines, "--- PASS: TestConformanceJS") {
		t.Fatal("TestConformanceJS did not run in Chromium")
	}
}

// shadersPage loads the js test binary. cogentcore/webgpu's
// Queue.WriteBuffer needs the instantiate result in a global named wasm.
const shadersPage = `<!doctype html><html><body><script src="wasm_exec.js"></script><script>
window.__lines = []; window.__done = false;
const log = console.log.bind(console);
console.log = (...a) => { window.__lines.push(a.join(" ")); log(...a); };
(async () => {
  try {
    const go = new Go();
    go.argv = ["shaders.test", "-test.v", "-test.run", "JS$"];
    go.env = {WEBKV_SEED: %q};
    const res = await WebAssembly.instantiateStreaming(fetch("shaders.test.wasm"), go.importObject);
    globalThis.wasm = res;
    await go.run(res.instance);
  } catch (e) {
    window.__lines.push("LOADER ERROR " + e);
  }
  window.__done = true;
})();
</script></body></html>`
