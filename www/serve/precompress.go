package serve

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"

	"github.com/andybalholm/brotli"
)

// Sizes are a file's sizes in bytes: as it is, and its twins'.
type Sizes struct {
	Name              string
	Raw, Gzip, Brotli int64
}

// Precompress writes NAME.gz (gzip, best compression) and NAME.br (brotli,
// quality 11) beside each named file in dir and returns the sizes. Twins are
// written to a temporary file and renamed, so a server never reads half a
// twin, and they are at least as new as their file (see Handler).
func Precompress(dir string, names ...string) ([]Sizes, error) {
	var out []Sizes
	for _, name := range names {
		p := filepath.Join(dir, name)
		raw, err := os.ReadFile(p)
		if err != nil {
			return out, fmt.Errorf("serve: precompress: %w", err)
		}
		s := Sizes{Name: name, Raw: int64(len(raw))}
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression) // a valid level
		zw.Write(raw)
		if err := zw.Close(); err != nil {
			return out, fmt.Errorf("serve: precompress %s: %w", name, err)
		}
		var br bytes.Buffer
		bw := brotli.NewWriterOptions(&br, brotli.WriterOptions{Quality: brotli.BestCompression, LGWin: 24})
		bw.Write(raw)
		if err := bw.Close(); err != nil {
			return out, fmt.Errorf("serve: precompress %s: %w", name, err)
		}
		for _, t := range []struct {
			ext string
			b   []byte
		}{{".gz", gz.Bytes()}, {".br", br.Bytes()}} {
			tmp := p + t.ext + ".tmp"
			if err := os.WriteFile(tmp, t.b, 0o644); err != nil {
				return out, fmt.Errorf("serve: precompress: %w", err)
			}
			if err := os.Rename(tmp, p+t.ext); err != nil {
				os.Remove(tmp)
				return out, fmt.Errorf("serve: precompress: %w", err)
			}
		}
		s.Gzip, s.Brotli = int64(gz.Len()), int64(br.Len())
		out = append(out, s)
	}
	return out, nil
}
