package optstate

// The states file ("WKVS"), written by Store.SaveOptimizerStates and read
// by Store.LoadOptimizerStates.
//
// MXNet pickles its Python updater (optimizer object and NDArray states);
// webkv writes a small self-describing binary format instead, so that a file
// can be read by any build (native, js, wasip1) and checked completely
// before a store changes. All integers are little-endian; floats are IEEE
// 754 binary32 bit patterns, little-endian.
//
//	offset  size   field
//	0       4      magic "WKVS"
//	4       2      format version, uint16: 1, or 2 when a key has residuals
//	6       2      flags, uint16 = 0 (reserved; readers reject other values)
//	8       8      num_update, int64 >= 0 (the store's update count)
//	16      4      L: length of the optimizer spec, uint32 <= 1 MiB (0: no spec)
//	20      L      optimizer spec: the JSON of an optimizer.Spec (must parse)
//	        4      K: number of key records, uint32 <= 2^24
//	then K key records, in any order, no key twice, all keys of one kind:
//	        1      key kind: 0 = int key, 1 = string key
//	        8      int key: int64 value
//	     or 4+n    string key: n as uint32 <= 65536, then n bytes
//	        8      t: update count of the key, int64 >= 0
//	        8      N: values per state array, uint64 <= 2^40
//	        1      S: number of state arrays, <= 8
//	        4*N*S  the S arrays, one after the other, N float32 each
//	        1      R: number of compression residual arrays, <= 64 (version 2 only)
//	        4*N*R  the R arrays, N float32 each
//	then
//	        4      CRC-32C (Castagnoli) of every byte before it
//
// The reader never allocates ahead of the data it has read: a header that
// claims 2^40 values makes it allocate at most a few MiB before the input
// runs out (arrays above stateEagerValues grow as their bytes arrive). A
// short input, a wrong magic, version or checksum, or a field out of range
// is an error that wraps ErrBadStates and says where it was found. The
// reader reads exactly the encoding and nothing after it, so a states file
// can be embedded in a longer stream.
//
// Version 2 adds the gradient compression residuals of each key (what
// 2bit/1bit quantization has not sent yet: one array per device in a local
// or device store, one per key in a dist store's worker), so a training
// run restored from a states file continues exactly, not with residuals
// reset to zero. Encode writes version 1 when no key has residuals, so
// those files stay readable by older builds; Decode reads both.

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"

	"github.com/webkv/webkv/kvcore/internal/bincodec"
	"github.com/webkv/webkv/kvcore/optimizer"
	"github.com/webkv/webkv/kvcore/updater"
)

// ErrBadStates is wrapped by every error of Decode: the input is not a
// valid states file.
var ErrBadStates = errors.New("bad optimizer states")

// Key names a key in a states file: an int key or a string key.
type Key struct {
	Str  bool
	Name string // string key
	Int  int    // int key
}

// String formats k as kvcore's keys do: 3 or "w0".
func (k Key) String() string {
	if k.Str {
		return strconv.Quote(k.Name)
	}
	return strconv.Itoa(k.Int)
}

// Snapshot is everything a states file holds.
type Snapshot struct {
	Optimizer []byte // JSON spec, or nil
	NumUpdate int64
	Keys      []KeyStates
}

// KeyStates are the optimizer states of one key: t updates so far, and
// len(States) arrays of N values each.
type KeyStates struct {
	Key    Key
	T      int64
	N      int
	States [][]float32
	// Residuals are the key's compression residuals, N values each
	// (version 2).
	Residuals [][]float32
}

const (
	statesMagic      = "WKVS"
	statesVersion    = 2 // the newest version Decode reads
	statesMaxResid   = 64
	statesMaxSpec    = 1 << 20
	statesMaxKeys    = 1 << 24
	statesMaxKeyLen  = 1 << 16
	statesMaxValues  = 1 << 40
	statesMaxArrays  = 8
	stateEagerValues = 1 << 16 // arrays up to 256 KiB are allocated at once
)

// Encode writes s to w in the format above.
func Encode(w io.Writer, s *Snapshot) error {
	if s == nil {
		return fmt.Errorf("encode states: nil snapshot")
	}
	if len(s.Optimizer) > statesMaxSpec {
		return fmt.Errorf("encode states: optimizer spec of %d bytes is above the limit of %d", len(s.Optimizer), statesMaxSpec)
	}
	if s.NumUpdate < 0 {
		return fmt.Errorf("encode states: num_update %d < 0", s.NumUpdate)
	}
	if len(s.Keys) > statesMaxKeys {
		return fmt.Errorf("encode states: %d keys is above the limit of %d", len(s.Keys), statesMaxKeys)
	}
	for i := range s.Keys {
		k := &s.Keys[i]
		switch {
		case k.Key.Str && len(k.Key.Name) > statesMaxKeyLen:
			return fmt.Errorf("encode states: key %d is %d bytes long, above the limit of %d", i, len(k.Key.Name), statesMaxKeyLen)
		case k.T < 0:
			return fmt.Errorf("encode states: key %v: t = %d < 0", k.Key, k.T)
		case k.N < 0 || uint64(k.N) > statesMaxValues:
			return fmt.Errorf("encode states: key %v: %d values per state is out of range [0, %d]", k.Key, k.N, uint64(statesMaxValues))
		case len(k.States) > statesMaxArrays:
			return fmt.Errorf("encode states: key %v: %d state arrays, at most %d", k.Key, len(k.States), statesMaxArrays)
		}
		for j, st := range k.States {
			if len(st) != k.N {
				return fmt.Errorf("encode states: key %v: state %d has %d values, N = %d", k.Key, j, len(st), k.N)
			}
		}
		if len(k.Residuals) > statesMaxResid {
			return fmt.Errorf("encode states: key %v: %d residual arrays, at most %d", k.Key, len(k.Residuals), statesMaxResid)
		}
		for j, st := range k.Residuals {
			if len(st) != k.N {
				return fmt.Errorf("encode states: key %v: residual %d has %d values, N = %d", k.Key, j, len(st), k.N)
			}
		}
	}
	version := uint16(1)
	for i := range s.Keys {
		if len(s.Keys[i].Residuals) > 0 {
			version = 2
		}
	}
	e := bincodec.NewWriter(w)
	e.Raw([]byte(statesMagic))
	e.U16(version)
	e.U16(0)
	e.U64(uint64(s.NumUpdate))
	e.U32(uint32(len(s.Optimizer)))
	e.Raw(s.Optimizer)
	e.U32(uint32(len(s.Keys)))
	for i := range s.Keys {
		k := &s.Keys[i]
		if k.Key.Str {
			e.U8(1)
			e.U32(uint32(len(k.Key.Name)))
			e.Raw([]byte(k.Key.Name))
		} else {
			e.U8(0)
			e.U64(uint64(int64(k.Key.Int)))
		}
		e.U64(uint64(k.T))
		e.U64(uint64(k.N))
		e.U8(uint8(len(k.States)))
		for _, st := range k.States {
			e.Float32s(st)
		}
		if version >= 2 {
			e.U8(uint8(len(k.Residuals)))
			for _, st := range k.Residuals {
				e.Float32s(st)
			}
		}
	}
	e.Trailer(e.Sum32())
	if e.Err != nil {
		return fmt.Errorf("encode states: %w", e.Err)
	}
	return nil
}

// bad wraps a read failure of the states file.
func bad(err error) error { return fmt.Errorf("%w: %v", ErrBadStates, err) }

// Decode reads one states file from r, checking everything (ranges,
// duplicate keys, the optimizer spec, the checksum) before it returns.
func Decode(r io.Reader) (*Snapshot, error) {
	d := bincodec.NewReader(r)
	var magic [4]byte
	if err := d.Read(magic[:], "magic"); err != nil {
		return nil, bad(err)
	}
	if string(magic[:]) != statesMagic {
		return nil, fmt.Errorf("%w: not a webkv states file (magic %q, want %q)", ErrBadStates, magic[:], statesMagic)
	}
	ver, err := d.U16("version")
	if err != nil {
		return nil, bad(err)
	}
	if ver < 1 || ver > statesVersion {
		return nil, fmt.Errorf("%w: states file version %d is not supported (this build reads versions 1 to %d)", ErrBadStates, ver, statesVersion)
	}
	flags, err := d.U16("flags")
	if err != nil {
		return nil, bad(err)
	}
	if flags != 0 {
		return nil, fmt.Errorf("%w: unknown flags %#x in the header", ErrBadStates, flags)
	}
	s := &Snapshot{}
	nu, err := d.U64("num_update")
	if err != nil {
		return nil, bad(err)
	}
	if int64(nu) < 0 {
		return nil, fmt.Errorf("%w: num_update %d < 0", ErrBadStates, int64(nu))
	}
	s.NumUpdate = int64(nu)
	specLen, err := d.U32("optimizer spec length")
	if err != nil {
		return nil, bad(err)
	}
	if specLen > statesMaxSpec {
		return nil, fmt.Errorf("%w: optimizer spec of %d bytes is above the limit of %d", ErrBadStates, specLen, statesMaxSpec)
	}
	if specLen > 0 {
		if s.Optimizer, err = d.Bytes(int(specLen), "optimizer spec"); err != nil {
			return nil, bad(err)
		}
		if _, err := optimizer.Parse(s.Optimizer); err != nil && !updater.IsMarker(s.Optimizer) {
			return nil, fmt.Errorf("%w: optimizer spec in the file: %v", ErrBadStates, err)
		}
	}
	nkeys, err := d.U32("key count")
	if err != nil {
		return nil, bad(err)
	}
	if nkeys > statesMaxKeys {
		return nil, fmt.Errorf("%w: %d keys is above the limit of %d", ErrBadStates, nkeys, statesMaxKeys)
	}
	s.Keys = make([]KeyStates, 0, min(int(nkeys), 1024))
	seen := make(map[Key]struct{}, min(int(nkeys), 1024))
	for i := range int(nkeys) {
		what := func(f string) string { return "key record " + strconv.Itoa(i) + " " + f }
		kind, err := d.U8(what("kind"))
		if err != nil {
			return nil, bad(err)
		}
		var ks KeyStates
		switch kind {
		case 0:
			v, err := d.U64(what("int key"))
			if err != nil {
				return nil, bad(err)
			}
			if int64(int(int64(v))) != int64(v) {
				return nil, fmt.Errorf("%w: key record %d: int key %d does not fit an int on this platform", ErrBadStates, i, int64(v))
			}
			ks.Key = Key{Int: int(int64(v))}
		case 1:
			n, err := d.U32(what("string key length"))
			if err != nil {
				return nil, bad(err)
			}
			if n > statesMaxKeyLen {
				return nil, fmt.Errorf("%w: key record %d: string key of %d bytes is above the limit of %d", ErrBadStates, i, n, statesMaxKeyLen)
			}
			b, err := d.Bytes(int(n), what("string key"))
			if err != nil {
				return nil, bad(err)
			}
			ks.Key = Key{Str: true, Name: string(b)}
		default:
			return nil, fmt.Errorf("%w: key record %d: unknown key kind %d (want 0 for int, 1 for string)", ErrBadStates, i, kind)
		}
		if i > 0 && ks.Key.Str != s.Keys[0].Key.Str {
			return nil, fmt.Errorf("%w: key record %d: key %v mixes int and string keys", ErrBadStates, i, ks.Key)
		}
		if _, dup := seen[ks.Key]; dup {
			return nil, fmt.Errorf("%w: key %v appears twice", ErrBadStates, ks.Key)
		}
		seen[ks.Key] = struct{}{}
		t, err := d.U64(what("t"))
		if err != nil {
			return nil, bad(err)
		}
		if int64(t) < 0 {
			return nil, fmt.Errorf("%w: key %v: t = %d < 0", ErrBadStates, ks.Key, int64(t))
		}
		ks.T = int64(t)
		n, err := d.U64(what("value count"))
		if err != nil {
			return nil, bad(err)
		}
		if n > statesMaxValues || n > uint64(math.MaxInt) {
			return nil, fmt.Errorf("%w: key %v: %d values per state is above the limit of %d", ErrBadStates, ks.Key, n, uint64(statesMaxValues))
		}
		ks.N = int(n)
		na, err := d.U8(what("state count"))
		if err != nil {
			return nil, bad(err)
		}
		if na > statesMaxArrays {
			return nil, fmt.Errorf("%w: key %v: %d state arrays, at most %d", ErrBadStates, ks.Key, na, statesMaxArrays)
		}
		for j := range int(na) {
			st, err := d.Float32s(ks.N, stateEagerValues, fmt.Sprintf("key %v state %d", ks.Key, j))
			if err != nil {
				return nil, bad(err)
			}
			ks.States = append(ks.States, st)
		}
		if ver >= 2 {
			nr, err := d.U8(what("residual count"))
			if err != nil {
				return nil, bad(err)
			}
			if nr > statesMaxResid {
				return nil, fmt.Errorf("%w: key %v: %d residual arrays, at most %d", ErrBadStates, ks.Key, nr, statesMaxResid)
			}
			for j := range int(nr) {
				st, err := d.Float32s(ks.N, stateEagerValues, fmt.Sprintf("key %v residual %d", ks.Key, j))
				if err != nil {
					return nil, bad(err)
				}
				ks.Residuals = append(ks.Residuals, st)
			}
		}
		s.Keys = append(s.Keys, ks)
	}
	want := d.Sum32()
	got, err := d.Trailer("checksum")
	if err != nil {
		return nil, bad(err)
	}
	if got != want {
		return nil, fmt.Errorf("%w: checksum mismatch (file says %#08x, content gives %#08x): the file is corrupt", ErrBadStates, got, want)
	}
	return s, nil
}
