package serve

import (
	"bytes"
	"compress/gzip"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/andybalholm/brotli"
)

// folder makes a page folder with webkv.wasm (random, so compression is
// honest about nothing), its twins written by Precompress, index.html, a
// file without twins and a dot folder.
func folder(t *testing.T) (string, []byte) {
	t.Helper()
	dir := t.TempDir()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	wasm := make([]byte, 200_000)
	for i := range wasm {
		wasm[i] = byte(rng.IntN(16)) // compressible, not trivially
	}
	write := func(name string, b []byte) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("webkv.wasm", wasm)
	write("index.html", []byte("<!doctype html><title>page</title>"))
	write("sub/index.html", []byte("<!doctype html><title>sub</title>"))
	write("plain.txt", bytes.Repeat([]byte("plain "), 100))
	write(".git/config", []byte("secret"))
	sizes, err := Precompress(dir, "webkv.wasm")
	if err != nil {
		t.Fatal(err)
	}
	if s := sizes[0]; s.Raw != int64(len(wasm)) || s.Gzip <= 0 || s.Gzip >= s.Raw || s.Brotli <= 0 || s.Brotli >= s.Raw {
		t.Fatalf("sizes %+v", s)
	}
	return dir, wasm
}

func get(t *testing.T, h http.Handler, method, target string, hdr map[string]string) *http.Response {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

func decode(t *testing.T, enc string, b []byte) []byte {
	t.Helper()
	var r io.Reader = bytes.NewReader(b)
	switch enc {
	case "gzip":
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	case "br":
		r = brotli.NewReader(r)
	case "":
	default:
		t.Fatalf("unexpected Content-Encoding %q", enc)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEncodings: Accept-Encoding picks brotli, then gzip, else the file;
// each answer decodes to the file, has the right Content-Type, Vary,
// Cache-Control, and an ETag of its own.
func TestEncodings(t *testing.T) {
	dir, wasm := folder(t)
	h := Handler(os.DirFS(dir), nil)
	tags := map[string]string{}
	for _, tc := range []struct{ accept, want string }{
		{"gzip, deflate, br, zstd", "br"},
		{"br;q=0, gzip", "gzip"},
		{"gzip;q=0.5, br;q=0.1", "br"}, // the server's order among allowed codings
		{"x-gzip", "gzip"},
		{"*", "br"},
		{"*;q=0, gzip", "gzip"},
		{"identity", ""},
		{"", ""},
		{"gzip;q=0, br;q=0", ""},
		{"deflate", ""},
	} {
		res := get(t, h, "GET", "/webkv.wasm", map[string]string{"Accept-Encoding": tc.accept})
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 {
			t.Fatalf("%q: status %d", tc.accept, res.StatusCode)
		}
		if got := res.Header.Get("Content-Encoding"); got != tc.want {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q, want %q", tc.accept, got, tc.want)
		}
		if !bytes.Equal(decode(t, res.Header.Get("Content-Encoding"), body), wasm) {
			t.Errorf("%q: body does not decode to the file", tc.accept)
		}
		if ct := res.Header.Get("Content-Type"); ct != "application/wasm" {
			t.Errorf("%q: Content-Type %q", tc.accept, ct)
		}
		if v := res.Header.Get("Vary"); v != "Accept-Encoding" {
			t.Errorf("%q: Vary %q", tc.accept, v)
		}
		if cc := res.Header.Get("Cache-Control"); cc != DefaultCacheControl {
			t.Errorf("%q: Cache-Control %q", tc.accept, cc)
		}
		et := res.Header.Get("ETag")
		if !strings.HasPrefix(et, `"`) || len(et) < 34 {
			t.Errorf("%q: ETag %q is not strong", tc.accept, et)
		}
		if old, ok := tags[tc.want]; ok && old != et {
			t.Errorf("encoding %q: ETag changed from %s to %s", tc.want, old, et)
		}
		tags[tc.want] = et
	}
	if tags["br"] == tags["gzip"] || tags["br"] == tags[""] || tags["gzip"] == tags[""] {
		t.Errorf("encodings share an ETag: %v", tags)
	}
	// A file without twins: no Vary, no encoding.
	res := get(t, h, "GET", "/plain.txt", map[string]string{"Accept-Encoding": "br, gzip"})
	if res.Header.Get("Content-Encoding") != "" || res.Header.Get("Vary") != "" || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("plain.txt: headers %v", res.Header)
	}
	// Custom Cache-Control.
	h2 := Handler(os.DirFS(dir), &Options{CacheControl: "public, max-age=60"})
	if cc := get(t, h2, "GET", "/index.html", nil).Header.Get("Cache-Control"); cc != "public, max-age=60" {
		t.Errorf("Cache-Control option: %q", cc)
	}
}

// TestConditional: If-None-Match with the ETag of the encoding the client
// gets is a 304 without a body; another ETag, or a changed file, is a 200.
func TestConditional(t *testing.T) {
	dir, _ := folder(t)
	h := Handler(os.DirFS(dir), nil)
	for _, accept := range []string{"br", "gzip", ""} {
		ae := map[string]string{"Accept-Encoding": accept}
		et := get(t, h, "GET", "/webkv.wasm", ae).Header.Get("ETag")
		ae["If-None-Match"] = et
		res := get(t, h, "GET", "/webkv.wasm", ae)
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusNotModified || len(body) != 0 || res.Header.Get("ETag") != et {
			t.Errorf("%q: If-None-Match %s: status %d, %d bytes, ETag %q", accept, et, res.StatusCode, len(body), res.Header.Get("ETag"))
		}
		ae["If-None-Match"] = `"other", ` + et
		if res := get(t, h, "GET", "/webkv.wasm", ae); res.StatusCode != http.StatusNotModified {
			t.Errorf("%q: a list with the ETag: status %d", accept, res.StatusCode)
		}
		ae["If-None-Match"] = `"other"`
		if res := get(t, h, "GET", "/webkv.wasm", ae); res.StatusCode != 200 {
			t.Errorf("%q: another ETag: status %d", accept, res.StatusCode)
		}
	}
	// A rebuilt file gets a new ETag; its stale twins (older than it) are
	// no longer served.
	et := get(t, h, "GET", "/webkv.wasm", nil).Header.Get("ETag")
	newer := []byte("rebuilt")
	if err := os.WriteFile(filepath.Join(dir, "webkv.wasm"), newer, 0o644); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "webkv.wasm"), future, future); err != nil {
		t.Fatal(err)
	}
	res := get(t, h, "GET", "/webkv.wasm", map[string]string{"If-None-Match": et, "Accept-Encoding": "br, gzip"})
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || res.Header.Get("ETag") == et || res.Header.Get("Content-Encoding") != "" || string(body) != "rebuilt" {
		t.Errorf("rebuilt file: status %d, ETag %q (was %q), encoding %q, body %q", res.StatusCode, res.Header.Get("ETag"), et, res.Header.Get("Content-Encoding"), body)
	}
}

// TestRange: a Range request gets 206 with the bytes of the encoding sent
// (RFC 9110: ranges apply to the representation); HEAD gets no body.
func TestRange(t *testing.T) {
	dir, wasm := folder(t)
	h := Handler(os.DirFS(dir), nil)
	res := get(t, h, "GET", "/webkv.wasm", map[string]string{"Range": "bytes=100-199"})
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusPartialContent || !bytes.Equal(body, wasm[100:200]) {
		t.Errorf("identity range: status %d, %d bytes", res.StatusCode, len(body))
	}
	gz, err := os.ReadFile(filepath.Join(dir, "webkv.wasm.gz"))
	if err != nil {
		t.Fatal(err)
	}
	res = get(t, h, "GET", "/webkv.wasm", map[string]string{"Range": "bytes=0-9", "Accept-Encoding": "gzip"})
	body, _ = io.ReadAll(res.Body)
	if res.StatusCode != http.StatusPartialContent || !bytes.Equal(body, gz[:10]) || res.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("gzip range: status %d, body %x, encoding %q", res.StatusCode, body, res.Header.Get("Content-Encoding"))
	}
	res = get(t, h, "HEAD", "/webkv.wasm", map[string]string{"Accept-Encoding": "br"})
	body, _ = io.ReadAll(res.Body)
	if res.StatusCode != 200 || len(body) != 0 || res.Header.Get("Content-Encoding") != "br" {
		t.Errorf("HEAD: status %d, %d bytes, encoding %q", res.StatusCode, len(body), res.Header.Get("Content-Encoding"))
	}
}

// TestPaths: folders serve their index.html and are never listed; dot
// files, missing files and escapes are 404; only GET and HEAD.
func TestPaths(t *testing.T) {
	dir, _ := folder(t)
	h := Handler(os.DirFS(dir), nil)
	for target, want := range map[string]int{
		"/":                   200,
		"/index.html":         200,
		"/sub/":               200,
		"/sub":                200,
		"/.git/config":        404,
		"/sub/../.git/config": 404,
		"/../../etc/passwd":   404,
		"/missing.js":         404,
		"/%2e%2e/x":           404,
	} {
		res := get(t, h, "GET", target, nil)
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != want {
			t.Errorf("%s: status %d, want %d", target, res.StatusCode, want)
		}
		if strings.Contains(string(body), "secret") || strings.Contains(string(body), "webkv.wasm") {
			t.Errorf("%s: body leaks a file or a listing: %q", target, body)
		}
	}
	if res := get(t, h, "POST", "/index.html", nil); res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: status %d, Allow %q", res.StatusCode, res.Header.Get("Allow"))
	}
	// An embedded (fs.FS) folder works too.
	m := fstest.MapFS{"index.html": {Data: []byte("hi")}, "a.js": {Data: []byte("x")}, "a.js.gz": {Data: []byte("not really gzip")}}
	res := get(t, Handler(m, nil), "GET", "/a.js", map[string]string{"Accept-Encoding": "gzip"})
	if res.Header.Get("Content-Encoding") != "gzip" || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/javascript") {
		t.Errorf("MapFS twin: headers %v", res.Header)
	}
}
