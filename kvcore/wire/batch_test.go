package wire

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
)

// pushBatch builds a push batch of entries whose data are f32 values
// (or packed words for compressed dtypes) derived from the entry index.
func buildBatch(typ Type, dt DType, ack uint64, hs []Header) (frame []byte, data [][]byte) {
	var b BatchBuilder
	b.Reset(typ, dt)
	var body []byte
	for i := range hs {
		h := hs[i]
		h.Type, h.DType = BatchOf(typ), dt
		b.Add(&h)
		if dt != DTypeNone {
			d := make([]byte, h.DataBytes())
			for j := range d {
				d[j] = byte(i*13 + j)
			}
			data = append(data, d)
			body = append(body, d...)
		}
	}
	head := b.Head(ack, len(body))
	return append(append([]byte(nil), head...), body...), data
}

func TestBatchRoundTrip(t *testing.T) {
	hs := []Header{
		{Seq: 5, Key: 1, Round: 3, Count: 16, Total: 16},
		{Seq: 6, Flags: FlagStrKey, Key: StrKeyID("w"), Round: 0, Count: 1, Offset: 0, Total: 1},
		{Seq: 7, Key: uint64(1) << 63, Round: 1 << 40, Count: 33, Offset: 7, Total: 100},
	}
	for _, tc := range []struct {
		typ Type
		dt  DType
	}{{TypePushes, DTypeF32}, {TypePushes, DType2Bit}, {TypePushes, DType1Bit}, {TypePushPulls, DTypeF32}, {TypePulls, DTypeNone}} {
		frame, data := buildBatch(tc.typ, tc.dt, 4, hs)
		var m Msg
		if err := Decode(frame, nil, &m); err != nil {
			t.Fatalf("%v %v: %v", tc.typ, tc.dt, err)
		}
		if m.Type != tc.typ || m.Count != 3 || m.Ack != 4 {
			t.Fatalf("%v: header %+v", tc.typ, m.Header)
		}
		es, err := DecodeBatch(&m, nil, nil)
		if err != nil {
			t.Fatalf("%v %v: %v", tc.typ, tc.dt, err)
		}
		if (len(m.Payload)-len(bytes.Join(data, nil)))%4 != 0 {
			t.Fatalf("%v: data not 4-byte aligned", tc.typ)
		}
		for i, e := range es {
			want := hs[i]
			want.Type, want.DType, want.Ack = BatchOf(tc.typ), tc.dt, 4
			want.PLen = uint32(want.DataBytes())
			if e.Header != want {
				t.Fatalf("%v entry %d: %+v, want %+v", tc.typ, i, e.Header, want)
			}
			if tc.dt != DTypeNone && !bytes.Equal(e.Payload, data[i]) || tc.dt == DTypeNone && len(e.Payload) != 0 {
				t.Fatalf("%v entry %d: data differs", tc.typ, i)
			}
		}
	}
}

func TestAnswersRoundTrip(t *testing.T) {
	vals := AppendFloat32s(nil, []float32{1, 2, 3})
	in := []Msg{
		{Header: Header{Type: TypeAck, Seq: 9, Key: 3, Round: 2, Flags: FlagLate}},
		{Header: Header{Type: TypeAck, Seq: 10, Key: 4, DType: DTypeF32, Count: 3, Offset: 1, Total: 4, Flags: FlagStrKey}, Payload: vals},
		{Header: Header{Type: TypeError, Seq: 11, Code: CodeUnknownKey}, Payload: []byte("key 8 was not initialized")},
		{Header: Header{Type: TypeAck, Seq: 12, Count: 2}},
	}
	var b AnswersBuilder
	b.Reset()
	for i := range in {
		in[i].PLen = uint32(len(in[i].Payload))
		b.Add(&in[i])
	}
	m, _ := b.Append(nil)
	frame := Append(nil, &m)
	var d Msg
	if err := Decode(frame, nil, &d); err != nil {
		t.Fatal(err)
	}
	es, err := DecodeBatch(&d, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != len(in) {
		t.Fatalf("%d entries", len(es))
	}
	for i := range in {
		if es[i].Header != in[i].Header || !bytes.Equal(es[i].Payload, in[i].Payload) {
			t.Fatalf("entry %d: %+v %q, want %+v %q", i, es[i].Header, es[i].Payload, in[i].Header, in[i].Payload)
		}
	}
	if got := ErrorOf(&es[2]); got.Code != CodeUnknownKey || got.Msg != "key 8 was not initialized" {
		t.Fatalf("error entry: %v", got)
	}
}

func TestBatchErrors(t *testing.T) {
	good, _ := buildBatch(TypePushes, DTypeF32, 1, []Header{{Seq: 1, Count: 2, Total: 2}, {Seq: 2, Count: 1, Total: 1}})
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	setPLen := func(b []byte) []byte { return setPLen(b, 0) }
	cases := map[string][]byte{
		"truncated data":    setPLen(mod(func(b []byte) []byte { return b[:len(b)-4] })),
		"extra data":        setPLen(mod(func(b []byte) []byte { return append(b, 0, 0, 0, 0) })),
		"no dtype":          mod(func(b []byte) []byte { b[6] = byte(DTypeNone); return b }),
		"seq in header":     mod(func(b []byte) []byte { b[8] = 1; return b }),
		"too many entries":  mod(func(b []byte) []byte { b[40] = 200; return b }),
		"seq 0":             mod(func(b []byte) []byte { b[HeaderSize] = 0; return b }),
		"part outside key":  mod(func(b []byte) []byte { b[HeaderSize+6] = 1; return b }), // total of entry 0: 2 -> 1
		"pull with a dtype": mod(func(b []byte) []byte { b[3] = byte(TypePulls); return b }),
	}
	for name, frame := range cases {
		var m Msg
		err := Decode(frame, nil, &m)
		if err == nil {
			_, err = DecodeBatch(&m, nil, nil)
		}
		var we *Error
		if !errors.As(err, &we) || (we.Code != CodeBadFrame && we.Code != CodeLimit) {
			t.Errorf("%s: %v, want a bad frame", name, err)
		}
	}
	// A limit on entries.
	var m Msg
	if err := Decode(good, &Limits{MaxKeys: 1}, &m); !errors.Is(err, &Error{Code: CodeLimit}) {
		t.Errorf("2 entries with MaxKeys 1: %v", err)
	}
}

func TestInitNoValue(t *testing.T) {
	meta := AppendInitMeta(nil, &InitMeta{Shape: []int64{4, 4}})
	frame := Append(nil, &Msg{Header: Header{Type: TypeInit, Flags: FlagNoValue, Seq: 1, Key: 3, Count: 8, Offset: 8, Total: 16}, Payload: meta})
	var m Msg
	if err := Decode(frame, nil, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Data()) != 0 || !bytes.Equal(m.Meta(), meta) {
		t.Fatalf("no-value init: data %d bytes, meta %q", len(m.Data()), m.Meta())
	}
	for name, h := range map[string]Header{
		"with a dtype":  {Type: TypeInit, Flags: FlagNoValue, DType: DTypeF32, Seq: 1, Count: 8, Total: 16},
		"outside":       {Type: TypeInit, Flags: FlagNoValue, Seq: 1, Count: 8, Offset: 9, Total: 16},
		"empty":         {Type: TypeInit, Flags: FlagNoValue, Seq: 1, Total: 16},
		"without flag":  {Type: TypeInit, Seq: 1, Count: 8, Total: 16},
		"needs a value": {Type: TypePush, Flags: FlagNoValue, Seq: 1, Count: 8, Total: 16},
	} {
		h.PLen = uint32(len(meta))
		if err := Decode(Append(nil, &Msg{Header: h, Payload: meta}), nil, &m); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzBatch: no input makes the decoders panic or allocate beyond what the
// frame can hold; a decoded batch re-encodes to entries that decode the
// same; and no strict prefix of a valid frame is itself valid (a frame is
// exactly one message, however the transport split the bytes it carried).
func FuzzBatch(f *testing.F) {
	for _, typ := range []Type{TypePushes, TypePulls, TypePushPulls} {
		dt := DTypeF32
		if typ == TypePulls {
			dt = DTypeNone
		}
		frame, _ := buildBatch(typ, dt, 3, []Header{{Seq: 1, Key: 5, Count: 3, Total: 3}, {Seq: 2, Key: 6, Count: 1, Offset: 2, Total: 9}})
		f.Add(frame)
	}
	f.Add(initsBatch())
	var b AnswersBuilder
	b.Add(&Msg{Header: Header{Type: TypeAck, Seq: 1, DType: DTypeF32, Count: 1, Total: 1}, Payload: make([]byte, 4)})
	b.Add(&Msg{Header: Header{Type: TypeError, Seq: 2, Code: CodeShape}, Payload: []byte("shape")})
	m, _ := b.Append(nil)
	f.Add(Append(nil, &m))
	f.Fuzz(func(t *testing.T, frame []byte) {
		var m Msg
		if err := Decode(frame, nil, &m); err != nil || !m.Type.IsBatch() {
			return
		}
		es, err := DecodeBatch(&m, nil, nil)
		if err != nil {
			return
		}
		if len(es) != int(m.Count) {
			t.Fatalf("%d entries, header says %d", len(es), m.Count)
		}
		// Re-encode.
		var again []byte
		if m.Type == TypeAnswers {
			var ab AnswersBuilder
			for i := range es {
				ab.Add(&es[i])
			}
			am, _ := ab.Append(nil)
			again = Append(nil, &am)
		} else {
			var bb BatchBuilder
			bb.Reset(m.Type, m.DType)
			var body []byte
			for i := range es {
				if m.Type == TypeInits {
					bb.AddInit(&es[i].Header, len(es[i].Payload)-es[i].DataBytes())
				} else {
					bb.Add(&es[i].Header)
				}
				body = append(body, es[i].Payload...)
			}
			again = append(append([]byte(nil), bb.Head(m.Ack, len(body))...), body...)
		}
		var m2 Msg
		if err := Decode(again, nil, &m2); err != nil {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
		es2, err := DecodeBatch(&m2, nil, nil)
		if err != nil {
			t.Fatalf("re-encoded batch: %v", err)
		}
		if !reflect.DeepEqual(headers(es), headers(es2)) {
			t.Fatal("re-encoded entries differ")
		}
		for i := range es {
			if !bytes.Equal(es[i].Payload, es2[i].Payload) {
				t.Fatalf("entry %d payload differs", i)
			}
		}
		// Prefixes: never a whole message.
		r := rand.New(rand.NewPCG(uint64(len(frame)), 1))
		for range 8 {
			k := r.IntN(len(frame))
			if err := Decode(frame[:k], nil, &m2); err == nil {
				t.Fatalf("a %d-byte prefix of a %d-byte frame decodes", k, len(frame))
			}
		}
	})
}

func headers(es []Msg) []Header {
	hs := make([]Header, len(es))
	for i := range es {
		hs[i] = es[i].Header
	}
	return hs
}

// initsBatch is a TypeInits batch: one init with a value, one without.
func initsBatch() []byte {
	var b BatchBuilder
	b.Reset(TypeInits, DTypeF32)
	m1 := AppendInitMeta(nil, &InitMeta{Shape: []int64{2}})
	m2 := AppendInitMeta(nil, &InitMeta{Name: "w", Shape: []int64{3, 1}})
	b.AddInit(&Header{Seq: 1, Key: 4, Count: 2, Total: 2}, len(m1))
	b.AddInit(&Header{Seq: 2, Flags: FlagStrKey | FlagNoValue, Key: StrKeyID("w"), Count: 3, Total: 3}, len(m2))
	data := append(append(append([]byte(nil), m1...), AppendFloat32s(nil, []float32{1.5, -2})...), m2...)
	return append(append([]byte(nil), b.Head(0, len(data))...), data...)
}

func TestInitsBatch(t *testing.T) {
	var m Msg
	if err := Decode(initsBatch(), nil, &m); err != nil {
		t.Fatal(err)
	}
	es, err := DecodeBatch(&m, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 || es[0].Type != TypeInit || es[0].DType != DTypeF32 || es[1].DType != DTypeNone || es[1].Flags&FlagNoValue == 0 {
		t.Fatalf("entries %+v", es)
	}
	im, err := DecodeInitMeta(es[0].Meta(), nil)
	if err != nil || im.Shape[0] != 2 {
		t.Fatalf("entry 0 meta: %+v, %v", im, err)
	}
	if v := Float32View(es[0].Data(), nil); len(v) != 2 || v[0] != 1.5 || v[1] != -2 {
		t.Fatalf("entry 0 values %v", v)
	}
	im, err = DecodeInitMeta(es[1].Meta(), nil)
	if err != nil || im.Name != "w" || len(es[1].Data()) != 0 {
		t.Fatalf("entry 1: %+v, %v, %d data bytes", im, err, len(es[1].Data()))
	}
}
