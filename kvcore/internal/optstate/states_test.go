package optstate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func sameSnapshot(t *testing.T, a, b *Snapshot) {
	t.Helper()
	if !bytes.Equal(a.Optimizer, b.Optimizer) || (a.Optimizer == nil) != (b.Optimizer == nil) {
		t.Fatalf("optimizer %q != %q", a.Optimizer, b.Optimizer)
	}
	if a.NumUpdate != b.NumUpdate || len(a.Keys) != len(b.Keys) {
		t.Fatalf("num_update %d/%d, keys %d/%d", a.NumUpdate, b.NumUpdate, len(a.Keys), len(b.Keys))
	}
	for i := range a.Keys {
		x, y := &a.Keys[i], &b.Keys[i]
		if x.Key != y.Key || x.T != y.T || x.N != y.N || len(x.States) != len(y.States) || len(x.Residuals) != len(y.Residuals) {
			t.Fatalf("key record %d: %+v vs %+v", i, x.Key, y.Key)
		}
		for j := range append(x.States, x.Residuals...) {
			xs, ys := x.States, y.States
			if j >= len(x.States) {
				xs, ys, j = x.Residuals, y.Residuals, j-len(x.States)
			}
			if len(xs[j]) != len(ys[j]) {
				t.Fatalf("key %v array %d: %d vs %d values", x.Key, j, len(xs[j]), len(ys[j]))
			}
			for k := range xs[j] {
				if math.Float32bits(xs[j][k]) != math.Float32bits(ys[j][k]) {
					t.Fatalf("key %v array %d [%d]: %v vs %v", x.Key, j, k, xs[j][k], ys[j][k])
				}
			}
		}
	}
}

func encode(t testing.TB, s *Snapshot) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Encode(&b, s); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// goldenSnapshot is the content of testdata/states_v1.wkvs.
func goldenSnapshot() *Snapshot {
	return &Snapshot{
		Optimizer: []byte(`{"version":1,"name":"adam","learning_rate":0.01}`),
		NumUpdate: 7,
		Keys: []KeyStates{
			{Key: Key{Int: 3}, T: 7, N: 3, States: [][]float32{{1, -2, 0.5}, {0.25, 4, 1e-8}}},
			{Key: Key{Int: -1}, T: 2, N: 2, States: [][]float32{{float32(math.Inf(1)), float32(math.NaN())}, {0, float32(math.Copysign(0, -1))}}},
			{Key: Key{Int: 123456789}, T: 0, N: 0, States: [][]float32{{}, {}}},
		},
	}
}

func testSnapshots(r *rand.Rand) []*Snapshot {
	big := make([]float32, stateEagerValues+(64<<10)/4*3+5) // exercises growth past the eager size, over several 64 KiB read chunks
	for i := range big {
		big[i] = float32(r.NormFloat64())
	}
	return []*Snapshot{
		{},
		goldenSnapshot(),
		{Optimizer: []byte(`{"name":"sgd","momentum":0.9}`), NumUpdate: 1 << 40, Keys: []KeyStates{
			{Key: Key{Str: true, Name: "w0"}, T: 3, N: 4, States: [][]float32{{1, 2, 3, 4}}},
			{Key: Key{Str: true, Name: ""}, T: 1, N: 1, States: [][]float32{{5}}},
			{Key: Key{Str: true, Name: strings.Repeat("ü", 1000)}, T: 9, N: 2},
		}},
		{NumUpdate: 2, Keys: []KeyStates{{Key: Key{Int: 0}, T: 2, N: len(big), States: [][]float32{big, big[:len(big):len(big)]}}}},
		// Version 2: compression residuals (2 devices on key 1, none on key 2).
		{Optimizer: []byte(`{"name":"adam"}`), NumUpdate: 7, Keys: []KeyStates{
			{Key: Key{Int: 1}, T: 7, N: 3, States: [][]float32{{1, 2, 3}, {4, 5, 6}}, Residuals: [][]float32{{0.25, -0.5, 0}, {0, 0.125, -0.25}}},
			{Key: Key{Int: 2}, T: 7, N: 1, States: [][]float32{{1}, {2}}},
			{Key: Key{Int: 3}, T: 0, N: len(big), Residuals: [][]float32{big}},
		}},
	}
}

// TestStatesResidualsLayout: a file with residuals is version 2, each key
// record ending with its residual count and arrays; one without stays
// version 1 (readable by older builds).
func TestStatesResidualsLayout(t *testing.T) {
	t.Parallel()
	le := binary.LittleEndian
	var b bytes.Buffer
	b.WriteString("WKVS")
	b.Write(le.AppendUint16(nil, 2))
	b.Write(le.AppendUint16(nil, 0))
	b.Write(le.AppendUint64(nil, 1))
	b.Write(le.AppendUint32(nil, 0))
	b.Write(le.AppendUint32(nil, 1))
	b.WriteByte(0)
	b.Write(le.AppendUint64(nil, 9))
	b.Write(le.AppendUint64(nil, 1)) // t
	b.Write(le.AppendUint64(nil, 2)) // N
	b.WriteByte(0)                   // no states (plain SGD)
	b.WriteByte(1)                   // one residual
	b.Write(le.AppendUint32(nil, math.Float32bits(0.5)))
	b.Write(le.AppendUint32(nil, math.Float32bits(-0.25)))
	b.Write(le.AppendUint32(nil, crc32.Checksum(b.Bytes(), crc32.MakeTable(crc32.Castagnoli))))
	want := &Snapshot{NumUpdate: 1, Keys: []KeyStates{{Key: Key{Int: 9}, T: 1, N: 2, Residuals: [][]float32{{0.5, -0.25}}}}}
	got, err := Decode(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	sameSnapshot(t, want, got)
	if enc := encode(t, want); !bytes.Equal(enc, b.Bytes()) {
		t.Errorf("Encode differs from the documented layout:\n%x\n%x", enc, b.Bytes())
	}
	want.Keys[0].Residuals = nil
	if enc := encode(t, want); le.Uint16(enc[4:]) != 1 {
		t.Errorf("a file without residuals is version %d, want 1", le.Uint16(enc[4:]))
	}
	bad := append([]byte(nil), b.Bytes()[:b.Len()-4-8-1]...)
	bad = append(bad, 65)
	if _, err := Decode(bytes.NewReader(withCRC(bad))); err == nil || !strings.Contains(err.Error(), "65 residual arrays") {
		t.Errorf("65 residual arrays: %v", err)
	}
}

// TestStatesRoundTrip checks decode(encode(s)) == s bit for bit, and that
// the decoder reads exactly the encoding and nothing after it.
func TestStatesRoundTrip(t *testing.T) {
	t.Parallel()
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 3))
	for _, s := range testSnapshots(r) {
		b := encode(t, s)
		rd := bytes.NewReader(append(append([]byte(nil), b...), "trailing"...))
		got, err := Decode(rd)
		if err != nil {
			t.Fatal(err)
		}
		sameSnapshot(t, s, got)
		if rd.Len() != len("trailing") {
			t.Errorf("decoder left %d bytes, want %d", rd.Len(), len("trailing"))
		}
		if again := encode(t, got); !bytes.Equal(again, b) {
			t.Error("re-encoding differs")
		}
	}
}

// TestStatesLayout checks the byte layout documented in states.go on a
// hand-built file, independently of Encode.
func TestStatesLayout(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	le := binary.LittleEndian
	b.WriteString("WKVS")
	b.Write(le.AppendUint16(nil, 1))
	b.Write(le.AppendUint16(nil, 0))
	b.Write(le.AppendUint64(nil, 42))
	spec := `{"name":"sgd"}`
	b.Write(le.AppendUint32(nil, uint32(len(spec))))
	b.WriteString(spec)
	b.Write(le.AppendUint32(nil, 2))
	// int key 5, t 3, N 2, 1 state
	b.WriteByte(0)
	b.Write(le.AppendUint64(nil, 5))
	b.Write(le.AppendUint64(nil, 3))
	b.Write(le.AppendUint64(nil, 2))
	b.WriteByte(1)
	b.Write(le.AppendUint32(nil, math.Float32bits(1.5)))
	b.Write(le.AppendUint32(nil, math.Float32bits(-2)))
	// int key 6, t 0, N 1, 0 states
	b.WriteByte(0)
	b.Write(le.AppendUint64(nil, 6))
	b.Write(le.AppendUint64(nil, 0))
	b.Write(le.AppendUint64(nil, 1))
	b.WriteByte(0)
	b.Write(le.AppendUint32(nil, crc32.Checksum(b.Bytes(), crc32.MakeTable(crc32.Castagnoli))))

	want := &Snapshot{Optimizer: []byte(spec), NumUpdate: 42, Keys: []KeyStates{
		{Key: Key{Int: 5}, T: 3, N: 2, States: [][]float32{{1.5, -2}}},
		{Key: Key{Int: 6}, T: 0, N: 1},
	}}
	got, err := Decode(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	sameSnapshot(t, want, got)
	if enc := encode(t, want); !bytes.Equal(enc, b.Bytes()) {
		t.Errorf("Encode differs from the documented layout:\n%x\n%x", enc, b.Bytes())
	}
}

// TestStatesGoldenFile decodes testdata/states_v1.wkvs, written by the
// first version of the format, so a change that breaks reading old files
// fails here. WEBKV_UPDATE_TESTDATA=1 rewrites it (only for a new version).
func TestStatesGoldenFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join("testdata", "states_v1.wkvs")
	want := goldenSnapshot()
	if os.Getenv("WEBKV_UPDATE_TESTDATA") == "1" {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, encode(t, want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	sameSnapshot(t, want, got)
	if !bytes.Equal(encode(t, got), b) {
		t.Error("encoding of the golden snapshot changed")
	}
}

// TestStatesTruncated cuts a valid file at every length: each prefix must
// give an error that wraps ErrBadStates and says the input is truncated.
func TestStatesTruncated(t *testing.T) {
	t.Parallel()
	b := encode(t, goldenSnapshot())
	for n := 0; n < len(b); n++ {
		_, err := Decode(bytes.NewReader(b[:n]))
		if err == nil {
			t.Fatalf("prefix of %d/%d bytes decoded without error", n, len(b))
		}
		if !errors.Is(err, ErrBadStates) || !strings.Contains(err.Error(), "truncated") {
			t.Fatalf("prefix of %d bytes: %v", n, err)
		}
	}
}

// TestStatesCorrupt flips every bit of a valid file: each flip must be an
// error (a range check or the CRC-32C, which catches any single-bit error).
func TestStatesCorrupt(t *testing.T) {
	t.Parallel()
	b := encode(t, goldenSnapshot())
	for i := range b {
		for bit := range 8 {
			c := append([]byte(nil), b...)
			c[i] ^= 1 << bit
			_, err := Decode(bytes.NewReader(c))
			if err == nil {
				t.Fatalf("flip of byte %d bit %d decoded without error", i, bit)
			}
			if !errors.Is(err, ErrBadStates) {
				t.Fatalf("flip of byte %d bit %d: error does not wrap ErrBadStates: %v", i, bit, err)
			}
		}
	}
}

// withCRC returns b with a correct checksum appended, for hand-made headers.
func withCRC(b []byte) []byte {
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}

func header(numUpdate uint64, spec string, nkeys uint32) []byte {
	le := binary.LittleEndian
	b := []byte("WKVS")
	b = le.AppendUint16(b, 1)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint64(b, numUpdate)
	b = le.AppendUint32(b, uint32(len(spec)))
	b = append(b, spec...)
	return le.AppendUint32(b, nkeys)
}

func intKeyRecord(key int64, t, n uint64, states uint8) []byte {
	le := binary.LittleEndian
	b := []byte{0}
	b = le.AppendUint64(b, uint64(key))
	b = le.AppendUint64(b, t)
	b = le.AppendUint64(b, n)
	return append(b, states)
}

// TestStatesBadFields checks each range check with a correct checksum, so
// the check itself (not the CRC) must catch it.
func TestStatesBadFields(t *testing.T) {
	t.Parallel()
	le := binary.LittleEndian
	strRec := func(s string) []byte {
		b := le.AppendUint32([]byte{1}, uint32(len(s)))
		b = append(b, s...)
		b = le.AppendUint64(b, 1)
		b = le.AppendUint64(b, 0)
		return append(b, 0)
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"magic", withCRC(append([]byte("WKVX"), header(0, "", 0)[4:]...)), "not a webkv states file"},
		{"version", withCRC(cat([]byte("WKVS"), le.AppendUint16(nil, 3), header(0, "", 0)[6:])), "version 3 is not supported"},
		{"version 0", withCRC(cat([]byte("WKVS"), le.AppendUint16(nil, 0), header(0, "", 0)[6:])), "version 0 is not supported"},
		{"flags", withCRC(cat(header(0, "", 0)[:6], le.AppendUint16(nil, 1), header(0, "", 0)[8:])), "unknown flags"},
		{"num_update", withCRC(header(1<<63, "", 0)), "num_update"},
		{"spec", withCRC(header(0, `{"name":"sgdd"}`, 0)), "optimizer spec in the file"},
		{"spec json", withCRC(header(0, `{"name":`, 0)), "optimizer spec in the file"},
		{"key kind", withCRC(cat(header(0, "", 1), []byte{7})), "unknown key kind 7"},
		{"t", withCRC(cat(header(0, "", 1), intKeyRecord(1, 1<<63, 0, 0))), "t = "},
		{"N", withCRC(cat(header(0, "", 1), intKeyRecord(1, 0, 1<<40+1, 0))), "values per state is above the limit"},
		{"arrays", withCRC(cat(header(0, "", 1), intKeyRecord(1, 0, 0, 9))), "9 state arrays"},
		{"duplicate", withCRC(cat(header(0, "", 2), intKeyRecord(1, 0, 0, 0), intKeyRecord(1, 0, 0, 0))), "appears twice"},
		{"mixed", withCRC(cat(header(0, "", 2), intKeyRecord(1, 0, 0, 0), strRec("a"))), "mixes int and string keys"},
		{"string key length", withCRC(cat(header(0, "", 1), le.AppendUint32([]byte{1}, 1<<16+1))), "string key of 65537 bytes"},
		{"key count", withCRC(header(0, "", 1<<24+1)), "keys is above the limit"},
		{"spec length", withCRC(cat(header(0, "", 0)[:16], le.AppendUint32(nil, 1<<20+1))), "above the limit"},
		{"crc", append(header(0, "", 0), 1, 2, 3, 4), "checksum mismatch"},
	} {
		_, err := Decode(bytes.NewReader(c.b))
		if err == nil || !errors.Is(err, ErrBadStates) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want ErrBadStates mentioning %q", c.name, err, c.want)
		}
	}
}

// TestStatesHostileHeaderAllocation checks that headers claiming huge
// sizes fail on the missing data without allocating for the claim.
func TestStatesHostileHeaderAllocation(t *testing.T) {
	// Not parallel: it reads the process-wide allocation counter, which
	// parallel tests would raise (Go runs this before any parallel test).
	cases := map[string][]byte{
		"2^40 values":   append(append(header(0, "", 1), intKeyRecord(1, 0, 1<<40, 8)...), make([]byte, 1000)...),
		"2^24 keys":     header(0, "", 1<<24),
		"1 MiB spec":    append(append(header(0, "", 0)[:16], 0, 0, 16, 0), "{"...),
		"64 KiB string": binary.LittleEndian.AppendUint32(append(header(0, "", 1), 1), 1<<16),
	}
	for name, b := range cases {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, err := Decode(bytes.NewReader(b))
		runtime.ReadMemStats(&after)
		if err == nil || !strings.Contains(err.Error(), "truncated") {
			t.Errorf("%s: err = %v, want a truncation error", name, err)
		}
		if d := after.TotalAlloc - before.TotalAlloc; d > 8<<20 {
			t.Errorf("%s: decoding %d bytes allocated %d bytes", name, len(b), d)
		}
	}
}

// TestStatesEncodeErrors checks the encoder's own checks.
func TestStatesEncodeErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		s    *Snapshot
		want string
	}{
		{"nil", nil, "nil snapshot"},
		{"N", &Snapshot{Keys: []KeyStates{{Key: Key{Int: 1}, N: 3, States: [][]float32{{1, 2}}}}}, "state 0 has 2 values, N = 3"},
		{"arrays", &Snapshot{Keys: []KeyStates{{Key: Key{Int: 1}, States: make([][]float32, 9)}}}, "9 state arrays"},
		{"t", &Snapshot{Keys: []KeyStates{{Key: Key{Int: 1}, T: -1}}}, "t = -1"},
		{"num_update", &Snapshot{NumUpdate: -2}, "num_update -2"},
		{"spec", &Snapshot{Optimizer: make([]byte, 1<<20+1)}, "optimizer spec of"},
		{"key", &Snapshot{Keys: []KeyStates{{Key: Key{Str: true, Name: strings.Repeat("x", 1<<16+1)}}}}, "bytes long"},
	} {
		if err := Encode(&bytes.Buffer{}, c.s); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to mention %q", c.name, err, c.want)
		}
	}
	// A failing writer's error is returned.
	if err := Encode(failWriter{}, goldenSnapshot()); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("failing writer: err = %v", err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// FuzzDecodeStates feeds arbitrary bytes to the decoder: it must never
// panic or allocate wildly, and whatever it accepts must re-encode to
// exactly the bytes it consumed (the format has one encoding per content).
func FuzzDecodeStates(f *testing.F) {
	r := rand.New(rand.NewPCG(1, 2))
	for i, s := range testSnapshots(r) {
		if i == 3 {
			continue // the big one slows every fuzz iteration down
		}
		f.Add(encode(f, s))
	}
	f.Add(encode(f, &Snapshot{NumUpdate: 1, Keys: []KeyStates{{Key: Key{Str: true, Name: "a"}, T: 1, N: 1, States: [][]float32{{1}, {2}, {3}}}}}))
	f.Add(header(0, "", 1<<24))
	f.Fuzz(func(t *testing.T, b []byte) {
		rd := bytes.NewReader(b)
		s, err := Decode(rd)
		if err != nil {
			if !errors.Is(err, ErrBadStates) {
				t.Fatalf("error does not wrap ErrBadStates: %v", err)
			}
			return
		}
		used := len(b) - rd.Len()
		if again := encode(t, s); !bytes.Equal(again, b[:used]) {
			t.Fatalf("re-encoding differs from the %d bytes decoded", used)
		}
	})
}
