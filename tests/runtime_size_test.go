//go:build !js && !wasip1

package tests

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
)

// runtimeBudget is webkv.wasm's gzipped budget, 1.5 MiB (wasm/js/build.sh
// enforces it too; RATIONALE.md, "Why is the browser runtime small?").
const runtimeBudget = 1572864

// TestBrowserRuntimeSmall checks issue 11's item 5: the GOOS=js build links
// none of the packages a browser never uses, webkv.wasm gzipped is within
// its budget, and `webkv-relay -static DIR` serves the runtime's
// precompressed twins with Content-Encoding, ETag and 304s.
func TestBrowserRuntimeSmall(t *testing.T) {
	root := brRepoRoot(t)
	list := exec.Command("go", "list", "-deps", "./wasm/js")
	list.Dir = root
	list.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	deps, err := list.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, p := range strings.Fields(string(deps)) {
		for _, bad := range []string{"net", "net/http", "net/url", "crypto/tls", "crypto/x509", "crypto/sha256", "text/template"} {
			if p == bad {
				t.Errorf("the GOOS=js runtime links %s (see RATIONALE.md, \"Why is the browser runtime small?\")", p)
			}
		}
	}

	dir := t.TempDir()
	build := exec.Command("sh", filepath.Join(root, "wasm/js/build.sh"), dir)
	build.Dir = root
	out, err := build.CombinedOutput()
	t.Logf("%s", bytes.TrimSpace(out))
	if err != nil {
		t.Fatalf("wasm/js/build.sh: %v", err)
	}
	wasm, err := os.ReadFile(filepath.Join(dir, "webkv.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	gzStat, err := os.Stat(filepath.Join(dir, "webkv.wasm.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if gzStat.Size() > runtimeBudget {
		t.Errorf("webkv.wasm is %d bytes gzipped, over its budget of %d", gzStat.Size(), runtimeBudget)
	}

	bad := exec.Command(buildRelay(t), "-listen", "127.0.0.1:0", "-static", filepath.Join(dir, "webkv.wasm"))
	msg, err := bad.CombinedOutput()
	if bad.ProcessState == nil || bad.ProcessState.ExitCode() != 2 || !strings.Contains(string(msg), "not a folder") {
		t.Errorf("-static on a file: %v, %s; want exit 2 and a usage error", err, msg)
	}
	p := startRelayProc(t, "-listen", "127.0.0.1:0", "-static", dir)
	base := "http://" + strings.TrimSuffix(strings.TrimSuffix(p.addr, "/ws"), "/")
	fetch := func(hdr map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", base+"/webkv.wasm", nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		// Our own Accept-Encoding: the client then leaves the body as sent.
		res, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, enc := range []string{"br", "gzip", ""} {
		res := fetch(map[string]string{"Accept-Encoding": enc})
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || res.Header.Get("Content-Encoding") != enc || res.Header.Get("Vary") != "Accept-Encoding" ||
			res.Header.Get("Content-Type") != "application/wasm" || res.Header.Get("Cache-Control") == "" {
			t.Fatalf("Accept-Encoding %q: status %d, headers %v", enc, res.StatusCode, res.Header)
		}
		var r io.Reader = bytes.NewReader(body)
		switch enc {
		case "br":
			r = brotli.NewReader(r)
		case "gzip":
			if r, err = gzip.NewReader(r); err != nil {
				t.Fatal(err)
			}
		}
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, wasm) {
			t.Fatalf("Accept-Encoding %q: %d bytes sent do not decode to webkv.wasm (%v)", enc, len(body), err)
		}
		t.Logf("Accept-Encoding %q: %d bytes on the wire", enc, len(body))
		etag := res.Header.Get("ETag")
		res = fetch(map[string]string{"Accept-Encoding": enc, "If-None-Match": etag})
		res.Body.Close()
		if res.StatusCode != http.StatusNotModified {
			t.Errorf("Accept-Encoding %q, If-None-Match %s: status %d, want 304", enc, etag, res.StatusCode)
		}
	}
}
