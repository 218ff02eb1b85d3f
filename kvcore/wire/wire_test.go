package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"runtime"
	"testing"
)

func sampleMsgs() [][]byte {
	var out [][]byte
	out = append(out, AppendHello(nil, &Hello{Job: "mnist", Role: "worker", Token: "t0k", WorkerID: "mnist/3",
		Mode: ModeSync, Want: 4, RankHint: 2, Attempt: 7,
		Keys: []KeyDecl{{Key: 3, Shape: []int64{2, 3}}, {Key: StrKeyID("w"), Name: "w", Shape: []int64{10}}}}))
	out = append(out, AppendWelcome(nil, &Welcome{WorkerID: "mnist/3", Rank: 1, NumWorkers: 4, Shard: 1, Heartbeat: 1000, Timeout: 10000, Mode: ModeAsync}))
	vals := []float32{1, -2.5, float32(math.Inf(1)), 0}
	init := AppendFloat32s(AppendInitMeta(nil, &InitMeta{Name: "w", Shape: []int64{4}}), vals)
	out = append(out, Append(nil, &Msg{Header: Header{Type: TypeInit, Flags: FlagStrKey, DType: DTypeF32, Seq: 1, Key: StrKeyID("w"), Count: 4, Total: 4}, Payload: init}))
	out = append(out, Append(nil, &Msg{Header: Header{Type: TypePush, DType: DType2Bit, Seq: 9, Ack: 3, Key: 7, Round: 11, Count: 20, Offset: 5, Total: 40}, Payload: AppendFloat32s(nil, []float32{1, 2})}))
	out = append(out, Append(nil, &Msg{Header: Header{Type: TypePushPull, DType: DTypeF32, Seq: 10, Key: 7, Count: 2, Total: 2}, Payload: AppendFloat32s(nil, []float32{3, 4})}))
	st := &States{Optimizer: []byte(`{"name":"sgd"}`), NumUpdate: 5, Keys: []KeyStates{{Key: 1, T: 5, Offset: 0, Total: 3, N: 3, States: [][]float32{{1, 2, 3}}}}}
	out = append(out, Append(nil, &Msg{Header: Header{Type: TypeAck, Seq: 4}, Payload: AppendStates(nil, st)}))
	out = append(out, AppendError(nil, 12, CodeReinit, "key 3: twice"))
	out = append(out, AppendHeader(nil, &Header{Type: TypePing}))
	return out
}

func TestRoundTrip(t *testing.T) {
	for i, frame := range sampleMsgs() {
		var m Msg
		if err := Decode(frame, nil, &m); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if again := Append(nil, &m); !bytes.Equal(again, frame) {
			t.Fatalf("message %d (%v): re-encoding differs", i, m.Type)
		}
		switch m.Type {
		case TypeHello:
			h, err := DecodeHello(m.Payload, nil)
			if err != nil || h.Job != "mnist" || h.Token != "t0k" || h.Want != 4 || h.RankHint != 2 || h.Attempt != 7 || len(h.Keys) != 2 || h.Keys[1].Name != "w" || !reflect.DeepEqual(h.Keys[0].Shape, []int64{2, 3}) {
				t.Fatalf("hello: %+v, %v", h, err)
			}
		case TypeWelcome:
			w, err := DecodeWelcome(m.Payload, nil)
			if err != nil || *w != (Welcome{WorkerID: "mnist/3", Rank: 1, NumWorkers: 4, Shard: 1, Heartbeat: 1000, Timeout: 10000, Mode: ModeAsync}) {
				t.Fatalf("welcome: %+v, %v", w, err)
			}
		case TypeInit:
			im, err := DecodeInitMeta(m.Meta(), nil)
			if err != nil || im.Name != "w" || im.Shape[0] != 4 {
				t.Fatalf("init meta: %+v, %v", im, err)
			}
			if v := Float32View(m.Data(), nil); v[1] != -2.5 || !math.IsInf(float64(v[2]), 1) {
				t.Fatalf("init data %v", v)
			}
		case TypePush:
			// 20 values from offset 5: words 0 and 1 (5%16 skipped).
			if len(m.Data()) != 8 || m.DataBytes() != 8 {
				t.Fatalf("2bit part data %d bytes", len(m.Data()))
			}
		case TypeAck:
			st, err := DecodeStates(m.Payload, nil)
			if err != nil || st.NumUpdate != 5 || st.Keys[0].States[0][2] != 3 {
				t.Fatalf("states: %+v, %v", st, err)
			}
		case TypeError:
			if e := ErrorOf(&m); !errors.Is(e, &Error{Code: CodeReinit}) || e.Msg != "key 3: twice" {
				t.Fatalf("error: %v", e)
			}
		}
		// Every truncation and every extension fails cleanly.
		for n := range len(frame) {
			if err := Decode(frame[:n], nil, &m); err == nil {
				t.Fatalf("message %d truncated to %d bytes decodes", i, n)
			}
		}
		if err := Decode(append(append([]byte(nil), frame...), 0), nil, &m); err == nil {
			t.Fatalf("message %d with a trailing byte decodes", i)
		}
	}
}

func TestHeaderErrors(t *testing.T) {
	good := Append(nil, &Msg{Header: Header{Type: TypePush, DType: DTypeF32, Seq: 1, Count: 2, Total: 2}, Payload: make([]byte, 8)})
	cases := []struct {
		name string
		mut  func(b []byte)
		code Code
	}{
		{"magic", func(b []byte) { b[0] = 'x' }, CodeBadFrame},
		{"version", func(b []byte) { b[2] = 9 }, CodeVersion},
		{"type", func(b []byte) { b[3] = 99 }, CodeBadFrame},
		{"dtype", func(b []byte) { b[6] = 9 }, CodeBadFrame},
		{"count beyond payload", func(b []byte) { binary.LittleEndian.PutUint32(b[40:], 3); binary.LittleEndian.PutUint32(b[48:], 3) }, CodeBadFrame},
		{"part outside key", func(b []byte) { binary.LittleEndian.PutUint32(b[44:], 1) }, CodeBadFrame},
		{"payload limit", func(b []byte) { binary.LittleEndian.PutUint32(b[52:], 1<<31) }, CodeLimit},
	}
	for _, c := range cases {
		b := append([]byte(nil), good...)
		c.mut(b)
		var m Msg
		err := Decode(b, nil, &m)
		var we *Error
		if !errors.As(err, &we) || we.Code != c.code {
			t.Errorf("%s: %v, want code %v", c.name, err, c.code)
		}
	}
}

// Hostile sizes are refused before anything big is allocated.
func TestLimitsBeforeAllocating(t *testing.T) {
	hostile := [][]byte{
		// hello declaring 2^40 keys
		binary.AppendUvarint(append(enc(nil).str("j").str("w").str("").str("").u8(1).u32(0).u32(0).u32(0), []byte{}...), 1<<40),
		// states: 1 key of 2^31 values with one state, a few bytes of data
		enc(nil).bytes(nil).u64(0).uv(1).u64(1).u8(0).str("").u64(1).u32(0).u32(1 << 31).u32(1 << 31).uv(1),
		// states: a huge key count
		enc(nil).bytes(nil).u64(0).uv(1 << 50),
		// a 2^62-byte string
		enc(nil).uv(1 << 62),
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.TotalAlloc
	for i, p := range hostile {
		_, e1 := DecodeHello(p, nil)
		_, e2 := DecodeStates(p, nil)
		if e1 == nil || e2 == nil {
			t.Errorf("hostile payload %d accepted: %v / %v", i, e1, e2)
		}
	}
	runtime.ReadMemStats(&ms)
	if grew := ms.TotalAlloc - before; grew > 1<<20 {
		t.Fatalf("decoding hostile payloads allocated %d bytes", grew)
	}
	lim := &Limits{MaxString: 4, MaxDims: 2, MaxKeys: 1}
	if _, err := DecodeHello(enc(nil).str("toolong").str("").str("").str("").u8(1).u32(0).u32(0).u32(0).uv(0), lim); !errors.Is(err, &Error{Code: CodeLimit}) {
		t.Errorf("long string: %v", err)
	}
	if _, err := DecodeInitMeta(enc(nil).str("").shape([]int64{1, 2, 3}), lim); !errors.Is(err, &Error{Code: CodeLimit}) {
		t.Errorf("rank 3 with MaxDims 2: %v", err)
	}
	if _, err := DecodeInitMeta(enc(nil).str("").shape([]int64{1 << 20, 1 << 20}), nil); !errors.Is(err, &Error{Code: CodeLimit}) {
		t.Errorf("2^40 elements: %v", err)
	}
}

// Place is MXNet's EncodeDefaultKey: small keys on (key*9973)%S, big keys
// split evenly with lround boundaries; every element lands exactly once.
func TestPlace(t *testing.T) {
	ps, _ := Place(nil, 5, 10, 3, 100)
	if len(ps) != 1 || ps[0] != (Part{Shard: (5 * 9973) % 3, Offset: 0, Len: 10}) {
		t.Fatalf("small key: %+v", ps)
	}
	ps, _ = Place(nil, 5, 1_000_000, 3, 0) // at the default bound: split
	want := []Part{{0, 0, 333333}, {1, 333333, 333334}, {2, 666667, 333333}}
	if !reflect.DeepEqual(ps, want) {
		t.Fatalf("big key: %+v, want %+v", ps, want)
	}
	for n := 1; n < 200; n++ {
		for s := 1; s <= 7; s++ {
			ps, err := Place(nil, uint64(n), n, s, 10)
			if err != nil {
				t.Fatal(err)
			}
			next := 0
			for _, p := range ps {
				if p.Offset != next || p.Len < 1 || p.Shard < 0 || p.Shard >= s {
					t.Fatalf("n=%d s=%d: bad part %+v in %+v", n, s, p, ps)
				}
				next += p.Len
			}
			if next != n {
				t.Fatalf("n=%d s=%d: parts cover %d", n, s, next)
			}
		}
	}
	if _, err := Place(nil, 1, 0, 1, 0); err == nil {
		t.Fatal("0 elements placed")
	}
	// FNV-1a 64 golden values: stable across versions and platforms.
	if StrKeyID("") != 0xcbf29ce484222325 || StrKeyID("a") != 0xaf63dc4c8601ec8c {
		t.Fatalf("StrKeyID changed: %x %x", StrKeyID(""), StrKeyID("a"))
	}
}

func TestPackedSpan(t *testing.T) {
	for _, c := range []struct {
		d          DType
		off, n     int
		first, cnt int
	}{
		{DType2Bit, 0, 16, 0, 1}, {DType2Bit, 0, 17, 0, 2}, {DType2Bit, 15, 2, 0, 2}, {DType2Bit, 16, 16, 1, 1},
		{DType1Bit, 33, 31, 1, 1}, {DType1Bit, 33, 32, 1, 2}, {DTypeF32, 7, 3, 7, 3},
	} {
		f, n := PackedSpan(c.d, c.off, c.n)
		if f != c.first || n != c.cnt {
			t.Errorf("PackedSpan(%v, %d, %d) = %d, %d; want %d, %d", c.d, c.off, c.n, f, n, c.first, c.cnt)
		}
	}
}

func TestFloatViews(t *testing.T) {
	f := []float32{1, 2, 3}
	b := AppendFloat32s(nil, f)
	if v := Float32View(b, nil); !reflect.DeepEqual(v, f) {
		t.Fatalf("view %v", v)
	}
	// Misaligned bytes are decoded into dst.
	mis := append([]byte{0}, b...)[1:]
	if v := Float32View(mis, make([]float32, 0, 3)); !reflect.DeepEqual(v, f) {
		t.Fatalf("misaligned view %v", v)
	}
}

// FuzzDecode feeds arbitrary bytes to every decoder, whole and split at a
// fuzzed position (a message cut by a transport, or two glued together):
// nothing panics, and whatever decodes re-encodes to the same bytes.
func FuzzDecode(f *testing.F) {
	for _, m := range sampleMsgs() {
		f.Add(m, uint16(len(m)/2))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		lim := &Limits{MaxPayload: 1 << 20, MaxKeys: 64, MaxString: 256}
		check := func(b []byte) {
			var m Msg
			if err := Decode(b, lim, &m); err != nil {
				var we *Error
				if !errors.As(err, &we) {
					t.Fatalf("error %v is not a *wire.Error", err)
				}
				return
			}
			if again := Append(nil, &m); !bytes.Equal(again, b) {
				t.Fatalf("decode/encode mismatch")
			}
			_ = m.Data()
			_ = m.Meta()
			if h, err := DecodeHello(m.Payload, lim); err == nil {
				var x Msg
				if Decode(AppendHello(nil, h), lim, &x) != nil {
					t.Fatal("decoded hello does not re-encode")
				}
			}
			if w, err := DecodeWelcome(m.Payload, lim); err == nil {
				if _, err := DecodeWelcome(AppendWelcome(nil, w)[HeaderSize:], lim); err != nil {
					t.Fatal("decoded welcome does not re-encode")
				}
			}
			DecodeInitMeta(m.Meta(), lim)
			if st, err := DecodeStates(m.Payload, lim); err == nil {
				if !bytes.Equal(AppendStates(nil, st), m.Payload) && st.Optimizer != nil {
					t.Fatal("decoded states do not re-encode")
				}
			}
		}
		check(data)
		c := int(cut) % (len(data) + 1)
		check(data[:c])
		check(data[c:])
		// Raw metadata decoders on the whole input too.
		DecodeHello(data, lim)
		DecodeWelcome(data, lim)
		DecodeInitMeta(data, lim)
		DecodeStates(data, lim)
	})
}
