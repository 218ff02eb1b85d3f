package mnist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Shard wire format (little-endian), served as application/octet-stream:
//
//	offset 0  "WKM1"        magic
//	       4  u32 count     samples in this shard
//	       8  u32 rows      28
//	      12  u32 cols      28
//	      16  u32 index     this shard's index
//	      20  u32 shards    number of shards in the split
//	      24  u32 flags     bit 0: IID split
//	      28  count × u8    labels, then zero padding to a multiple of 4
//	       …  count×rows×cols × u8 pixels, row-major per image
//
// One byte per pixel keeps a shard of 15000 images at 11.8 MB, four times
// smaller than float32, and a browser decodes it with one Uint8Array view.
const shardMagic = "WKM1"

// ShardHeaderSize is the size of the fixed header.
const ShardHeaderSize = 28

// ShardInfo is the header of an encoded shard.
type ShardInfo struct {
	Index, Shards int
	IID           bool
}

// EncodeShard encodes s in the shard format.
func EncodeShard(s *Set, info ShardInfo) []byte {
	n := s.Len()
	lpad := (n + 3) &^ 3
	b := make([]byte, ShardHeaderSize+lpad+n*Pixels)
	copy(b, shardMagic)
	le := binary.LittleEndian
	le.PutUint32(b[4:], uint32(n))
	le.PutUint32(b[8:], 28)
	le.PutUint32(b[12:], 28)
	le.PutUint32(b[16:], uint32(info.Index))
	le.PutUint32(b[20:], uint32(info.Shards))
	if info.IID {
		le.PutUint32(b[24:], 1)
	}
	copy(b[ShardHeaderSize:], s.Labels)
	copy(b[ShardHeaderSize+lpad:], s.Images)
	return b
}

// ErrBadShard is wrapped by DecodeShard's errors.
var ErrBadShard = errors.New("bad shard data")

// DecodeShard parses an encoded shard.
func DecodeShard(b []byte) (*Set, ShardInfo, error) {
	var info ShardInfo
	if len(b) < ShardHeaderSize {
		return nil, info, fmt.Errorf("mnist: %w: %d bytes, shorter than the %d-byte header", ErrBadShard, len(b), ShardHeaderSize)
	}
	if string(b[:4]) != shardMagic {
		return nil, info, fmt.Errorf("mnist: %w: magic %q, want %q", ErrBadShard, b[:4], shardMagic)
	}
	le := binary.LittleEndian
	n := int(le.Uint32(b[4:]))
	rows, cols := le.Uint32(b[8:]), le.Uint32(b[12:])
	if rows != 28 || cols != 28 {
		return nil, info, fmt.Errorf("mnist: %w: images are %d×%d, want 28×28", ErrBadShard, rows, cols)
	}
	info.Index, info.Shards = int(le.Uint32(b[16:])), int(le.Uint32(b[20:]))
	info.IID = le.Uint32(b[24:])&1 != 0
	lpad := (n + 3) &^ 3
	if want := ShardHeaderSize + lpad + n*Pixels; len(b) != want {
		return nil, info, fmt.Errorf("mnist: %w: %d bytes for %d samples, want %d", ErrBadShard, len(b), n, want)
	}
	s := &Set{
		Labels: append([]uint8(nil), b[ShardHeaderSize:ShardHeaderSize+n]...),
		Images: append([]uint8(nil), b[ShardHeaderSize+lpad:]...),
	}
	for i, l := range s.Labels {
		if l > 9 {
			return nil, info, fmt.Errorf("mnist: %w: label %d of sample %d is not a digit", ErrBadShard, l, i)
		}
	}
	return s, info, nil
}

// DataHandler serves MNIST to workers and browser tabs:
//
//	GET /data/shard?i=I&n=N[&iid=1|0][&seed=S][&max=M]
//	    shard I of a split of the training set into N shards (IID by
//	    default; iid=0 gives the label-sorted non-IID split), at most M
//	    samples of it;
//	GET /data/test[?max=M]
//	    the first M samples of the test set (all 10000 by default), as a
//	    shard with index 0 of 1.
//
// The data is read from disk on the first request (see Load), so mounting
// the handler costs nothing until a client asks.
func DataHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /data/shard", serveShard)
	mux.HandleFunc("GET /data/test", serveTest)
	return mux
}

func intParam(r *http.Request, name string, def, lo, hi int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < lo || v > hi {
		return 0, fmt.Errorf("query parameter %s=%q: want an integer in [%d,%d]", name, s, lo, hi)
	}
	return v, nil
}

func serveShard(w http.ResponseWriter, r *http.Request) {
	// Parameters first: a bad request is answered without reading MNIST.
	n, err := intParam(r, "n", -1, 1, 10000)
	if err == nil && n < 0 {
		err = errors.New("query parameter n (number of shards) is required")
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	i, err := intParam(r, "i", -1, 0, n-1)
	if err == nil && i < 0 {
		err = errors.New("query parameter i (shard index) is required")
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	seed, err := intParam(r, "seed", 1, 0, 1<<31-1)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	maxN, err := intParam(r, "max", 0, 0, 60000)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	iid := true
	switch strings.ToLower(r.URL.Query().Get("iid")) {
	case "", "1", "true", "yes":
	case "0", "false", "no":
		iid = false
	default:
		http.Error(w, fmt.Sprintf("query parameter iid=%q: want 1 or 0", r.URL.Query().Get("iid")), http.StatusBadRequest)
		return
	}
	train, _, err := Load()
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	parts, err := Split(train.Labels, n, iid, int64(seed))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	sub, err := train.Subset(Cap(parts[i], maxN))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeShard(w, EncodeShard(sub, ShardInfo{Index: i, Shards: n, IID: iid}))
}

func serveTest(w http.ResponseWriter, r *http.Request) {
	maxN, err := intParam(r, "max", 0, 0, 10000)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	_, test, err := Load()
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	writeShard(w, EncodeShard(test.Head(maxN), ShardInfo{Index: 0, Shards: 1, IID: true}))
}

func writeShard(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.Header().Set("Cache-Control", "public, max-age=3600") // shards are deterministic
	// An error here is the client gone mid-answer: nothing to tell it.
	_, _ = w.Write(b)
}
