//go:build !js && !wasip1

package tests

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/webkv/webkv/relay"
)

// readmeExample is the first ```js block of wasm/js/README.md.
func readmeExample(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(brRepoRoot(t), "wasm/js/README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```js\n(.*?)```").FindSubmatch(b)
	if m == nil {
		t.Fatal("wasm/js/README.md has no ```js block")
	}
	return string(m[1])
}

// readmeRelayURL is the relay address the README's example uses; the tests
// put their own relay's in its place.
const readmeRelayURL = "ws://127.0.0.1:7070/ws"

// TestBrowserReadme runs the JS README's example in Chromium (against a
// relay of the test's) and type-checks it, with webkv.d.ts, under tsc
// --strict with @webgpu/types (issue 11, item 8). tests/tsc pins typescript
// and @webgpu/types; the test installs them with npm ci when missing.
func TestBrowserReadme(t *testing.T) {
	integration(t)
	example := readmeExample(t)
	if !strings.Contains(example, readmeRelayURL) || !strings.Contains(example, "import * as webkv from './webkv.js';") {
		t.Fatalf("the README example changed shape (want the import line and %s): update this test", readmeRelayURL)
	}
	t.Run("tsc", func(t *testing.T) { readmeTypes(t, example) })
	t.Run("chromium", func(t *testing.T) { readmeRun(t, example) })
}

func readmeTypes(t *testing.T, example string) {
	root := brRepoRoot(t)
	tscDir := filepath.Join(root, "tests/tsc")
	const tscBin = "node_modules/typescript/bin/tsc"
	brNpmCI(t, tscDir, tscBin)
	tsc := filepath.Join(tscDir, tscBin)
	dir := t.TempDir()
	if err := os.Symlink(filepath.Join(tscDir, "node_modules"), filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	dts, err := os.ReadFile(filepath.Join(root, "wasm/js/webkv.d.ts"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"webkv.d.ts": string(dts),
		"example.ts": example,
		// What the declarations must refuse or narrow (a @ts-expect-error
		// line that compiles is itself an error).
		"strict.ts": `import * as webkv from './webkv.js';
const kv = await webkv.create('local', {debug: true});
// @ts-expect-error: not an optimizer spec
await kv.setOptimizer(42);
// @ts-expect-error: no such event
kv.on('nope', () => {});
kv.on('membership', (d) => { const n: number = d.numWorkers; void n; });
try {
  await kv.pull(1);
} catch (e) {
  if (e instanceof webkv.WebKVError) {
    const c: webkv.ErrorCode = e.code;
    // @ts-expect-error: codes are a closed set
    const d: 'NOT_A_CODE' = e.code;
    void c; void d;
  }
}
const out: Float32Array = await kv.pull(1, new Float32Array(4));
const buf: GPUBuffer | undefined = (await webkv.gpu()).device?.createBuffer({size: 16, usage: GPUBufferUsage.STORAGE});
void out; void buf;
`,
		"tsconfig.json": `{"compilerOptions": {"strict": true, "noEmit": true, "target": "es2022", "module": "es2022",
  "moduleResolution": "bundler", "lib": ["es2022", "dom"], "types": [], "skipLibCheck": false},
  "files": ["webkv.d.ts", "example.ts", "strict.ts"]}`,
	}
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("node", tsc, "-p", filepath.Join(dir, "tsconfig.json"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tsc --strict on webkv.d.ts and the README example: %v\n%s", err, out)
	}
}

func readmeRun(t *testing.T, example string) {
	rs, err := relay.NewServer(relay.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var wsURL string
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := strings.Replace(example, "import * as webkv from './webkv.js';", "const webkv = await import('/webkv/webkv.js');", 1)
		code = strings.ReplaceAll(code, readmeRelayURL, wsURL)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><meta charset="utf-8"><title>README example</title><script type="module">
try {
%s
  window.__webkvResult = JSON.stringify({ok: true});
} catch (e) {
  window.__webkvResult = JSON.stringify({fatal: String(e && e.stack || e)});
}
</script>`, code)
	})
	srv := brServer(t, map[string]http.Handler{"/ws": rs, "/readme.html": page})
	wsURL = "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	ctx := brBrowser(t)
	var res struct {
		OK    bool
		Fatal string
	}
	brRunPage(t, ctx, srv.URL+"/readme.html", 2*time.Minute, &res)
	if !res.OK {
		t.Fatalf("the README example failed in Chromium: %s", res.Fatal)
	}
}
