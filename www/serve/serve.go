// Package serve serves a folder of web files: a page and webkv's browser
// runtime (webkv.js, webkv.wasm, ...). The relay serves its page folder
// through it (`webkv relay -static DIR`), and so does the demo.
//
// A file NAME may have precompressed twins NAME.br and NAME.gz beside it
// (Precompress writes them; wasm/js/build.sh does for the runtime): the
// handler picks one by the request's Accept-Encoding (brotli first, then
// gzip, else the file itself) and sends it with Content-Encoding and
// Vary: Accept-Encoding. Every answer carries a strong ETag (a hash of the
// file's bytes, one per encoding) and Cache-Control; If-None-Match is
// answered 304 and Range/If-Range work as in http.ServeContent. Folders
// serve their index.html and are never listed; names with a segment that
// starts with "." (.git, .env) are not served.
package serve

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultCacheControl lets browsers and proxies keep every file but
// revalidate it on each use: the runtime's file names carry no version, so
// a newer webkv.wasm must never be hidden by a cached one, and a
// revalidation of an unchanged file is one round trip answered 304.
const DefaultCacheControl = "no-cache"

// Options configure Handler.
type Options struct {
	// CacheControl is sent with every file (default DefaultCacheControl).
	CacheControl string
}

// encodings are the content codings served from twins, best first.
var encodings = []struct{ coding, ext, tag string }{
	{"br", ".br", "-br"},
	{"gzip", ".gz", "-gz"},
}

// Handler serves the files of fsys (see the package doc).
func Handler(fsys fs.FS, o *Options) http.Handler {
	h := &handler{fsys: fsys, cacheControl: DefaultCacheControl, tags: map[tagKey]string{}}
	if o != nil && o.CacheControl != "" {
		h.cacheControl = o.CacheControl
	}
	return h
}

type handler struct {
	fsys         fs.FS
	cacheControl string

	mu   sync.Mutex
	tags map[tagKey]string // content hashes of files as last seen
}

type tagKey struct {
	name string
	size int64
	mod  time.Time
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	for _, seg := range strings.Split(name, "/") {
		if strings.HasPrefix(seg, ".") {
			http.NotFound(w, r)
			return
		}
	}
	if name == "" {
		name = "index.html"
	}
	st, err := fs.Stat(h.fsys, name)
	if err == nil && st.IsDir() {
		name = path.Join(name, "index.html")
		st, err = fs.Stat(h.fsys, name)
	}
	if err != nil || !st.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	tag, err := h.hash(name, st)
	if err != nil {
		http.Error(w, "cannot read "+name, http.StatusInternalServerError)
		return
	}
	// A twin older than its file is stale (the file was rebuilt without
	// it): it is never served.
	var have []int
	for i, e := range encodings {
		if tw, err := fs.Stat(h.fsys, name+e.ext); err == nil && tw.Mode().IsRegular() && !tw.ModTime().Before(st.ModTime()) {
			have = append(have, i)
		}
	}
	hd := w.Header()
	if len(have) > 0 {
		hd.Set("Vary", "Accept-Encoding")
	}
	serveName, etag := name, `"`+tag+`"`
	if i := negotiate(r.Header.Get("Accept-Encoding"), have); i >= 0 {
		serveName, etag = name+encodings[i].ext, `"`+tag+encodings[i].tag+`"`
		hd.Set("Content-Encoding", encodings[i].coding)
	}
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" && serveName != name {
		ctype = "application/octet-stream" // never sniff compressed bytes
	}
	if ctype != "" {
		hd.Set("Content-Type", ctype)
	}
	hd.Set("ETag", etag)
	hd.Set("Cache-Control", h.cacheControl)
	f, err := h.fsys.Open(serveName)
	if err != nil {
		hd.Del("Content-Encoding")
		http.Error(w, "cannot open "+name, http.StatusInternalServerError)
		return
	}
	defer f.Close()
	rs, ok := f.(io.ReadSeeker)
	if !ok {
		b, err := io.ReadAll(f)
		if err != nil {
			http.Error(w, "cannot read "+name, http.StatusInternalServerError)
			return
		}
		rs = strings.NewReader(string(b))
	}
	http.ServeContent(w, r, name, st.ModTime(), rs)
}

// hash is the hex SHA-256 (first 16 bytes) of name's content, cached while
// its size and modification time stay the same.
func (h *handler) hash(name string, st fs.FileInfo) (string, error) {
	k := tagKey{name, st.Size(), st.ModTime()}
	h.mu.Lock()
	tag, ok := h.tags[k]
	h.mu.Unlock()
	if ok {
		return tag, nil
	}
	f, err := h.fsys.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sum := sha256.New()
	if _, err := io.Copy(sum, f); err != nil {
		return "", err
	}
	tag = hex.EncodeToString(sum.Sum(nil)[:16])
	h.mu.Lock()
	if len(h.tags) > 4096 { // a folder that keeps changing: start over
		clear(h.tags)
	}
	h.tags[k] = tag
	h.mu.Unlock()
	return tag, nil
}

// negotiate picks the best of the available encodings (indexes into
// encodings) that accept allows, or -1 for the file itself. A coding is
// allowed when it, or "*" without an entry of its own, has q > 0
// (RFC 9110, section 12.5.3); "x-gzip" counts as gzip.
func negotiate(accept string, have []int) int {
	if len(have) == 0 || accept == "" {
		return -1
	}
	q := map[string]float64{}
	for _, part := range strings.Split(accept, ",") {
		coding, params, _ := strings.Cut(part, ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		if coding == "x-gzip" {
			coding = "gzip"
		}
		v := 1.0
		for _, p := range strings.Split(params, ";") {
			k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
				if err != nil {
					f = 0
				}
				v = f
			}
		}
		if coding != "" {
			q[coding] = v
		}
	}
	for _, i := range have {
		v, ok := q[encodings[i].coding]
		if !ok {
			v, ok = q["*"]
		}
		if ok && v > 0 {
			return i
		}
	}
	return -1
}
