//go:build !js && !wasip1

package simd

import (
	"context"
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

// TestInBrowser builds this package's tests for GOOS=js and runs the js ones
// (backend_js_test.go: the Backend conformance suite, equality with the CPU
// reference, Load) in headless Chromium without WebGPU, the kernels loaded
// by webkv.js's loadSIMD over the test binary's memory, as webkv.js loads
// them for webkv.wasm. It is left out under -short (it builds a wasm test
// binary and starts a browser). Without Chromium it fails, unless
// WEBKV_ALLOW_NO_BROWSER=1.
func TestInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a GOOS=js test binary and starts Chromium; left out under -short")
	}
	browser := ""
	for _, name := range []string{os.Getenv("WEBKV_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			browser = p
			break
		}
	}
	if browser == "" {
		if os.Getenv("WEBKV_ALLOW_NO_BROWSER") == "1" {
			t.Skip("no Chromium (WEBKV_ALLOW_NO_BROWSER=1)")
		}
		t.Fatal("no Chromium found (install chromium, set WEBKV_CHROMIUM, or WEBKV_ALLOW_NO_BROWSER=1 to skip)")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "simd.test.wasm")
	build := exec.Command("go", "test", "-c", "-o", bin, ".")
	build.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the js tests: %v\n%s", err, out)
	}
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	files := map[string]string{
		"/simd.test.wasm":  bin,
		"/wasm_exec.js":    filepath.Join(strings.TrimSpace(string(goroot)), "lib", "wasm", "wasm_exec.js"),
		"/webkv.js":        filepath.Join("..", "webkv.js"),
		"/webkv-simd.wasm": "kernels.wasm",
	}
	page := fmt.Sprintf(browserPage, os.Getenv("WEBKV_SEED"))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case p == "/":
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, page)
		case strings.HasSuffix(p, ".js") && files[p] != "":
			w.Header().Set("Content-Type", "text/javascript")
			http.ServeFile(w, r, files[p])
		case strings.HasSuffix(p, ".wasm") && files[p] != "":
			w.Header().Set("Content-Type", "application/wasm")
			http.ServeFile(w, r, files[p])
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL)); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	_, err = chromedp.Run(ctx, chromedp.Poll[bool]("window.__done === true",
		chromedp.WithPollingInterval(time.Second), chromedp.WithPollingTimeout(10*time.Minute)))
	lines, lerr := chromedp.Run(ctx, chromedp.Evaluate[string](`window.__lines.join("\n")`))
	if err != nil || lerr != nil {
		t.Fatalf("running the js tests in Chromium: %v, %v\n%s", err, lerr, lines)
	}
	t.Logf("output of the GOOS=js tests in Chromium:\n%s", lines)
	passed := false
	for _, l := range strings.Split(lines, "\n") {
		l = strings.TrimSpace(l)
		if l == "PASS" {
			passed = true
		}
		if strings.HasPrefix(l, "--- FAIL") || l == "FAIL" || strings.HasPrefix(l, "LOADER ERROR") {
			passed = false
			break
		}
	}
	if !passed {
		t.Fatal("the GOOS=js tests did not pass in Chromium (output above)")
	}
	for _, name := range []string{"TestConformanceJS", "TestEqualsCPUJS", "TestLoadJS"} {
		if !strings.Contains(lines, "--- PASS: "+name) {
			t.Errorf("%s did not run in Chromium", name)
		}
	}
}

// browserPage hides navigator.gpu (a browser without WebGPU, where webkv's
// CPU path runs), loads the js test binary with Go's loader and the kernels
// with webkv.js's loadSIMD over its memory, then runs the tests.
const browserPage = `<!doctype html><html><body><script src="wasm_exec.js"></script>
<script>
Object.defineProperty(Navigator.prototype, 'gpu', {get() { return undefined; }, configurable: true});
window.__lines = []; window.__done = false;
const log = console.log.bind(console);
console.log = (...a) => { window.__lines.push(a.join(" ")); log(...a); };
</script>
<script type="module">
import {loadSIMD, simdSupported} from '/webkv.js';
try {
  const go = new Go();
  go.argv = ["simd.test", "-test.v", "-test.run", "JS$"];
  go.env = {WEBKV_SEED: %q};
  const res = await WebAssembly.instantiateStreaming(fetch("simd.test.wasm"), go.importObject);
  globalThis.wasm = res;
  console.log("WebAssembly SIMD: " + simdSupported());
  globalThis.__webkvSIMD = await loadSIMD(res.instance.exports.mem, {simdURL: "/webkv-simd.wasm"});
  if (globalThis.__webkvSIMD.error) console.log("LOADER ERROR " + globalThis.__webkvSIMD.error);
  await go.run(res.instance);
} catch (e) {
  window.__lines.push("LOADER ERROR " + e);
}
window.__done = true;
</script></body></html>`
