package wire

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
)

// buildList builds a list request frame: keys (with rounds for a push)
// and, for a push, lens[i] values of key i.
func buildList(typ Type, seq uint64, keys, rounds []uint64, lens []int) []byte {
	var b ListBuilder
	b.Reset(typ, len(keys))
	total := 0
	for i, k := range keys {
		var r uint64
		if rounds != nil {
			r = rounds[i]
		}
		b.Add(k, r)
		total += lens[i]
	}
	h := b.ListHeader(seq, 1, 0, total)
	frame := AppendHeader(nil, &h)
	frame = append(frame, b.Table()...)
	if typ == TypePushList {
		for i := range total {
			frame = AppendFloat32s(frame, []float32{float32(i)})
		}
	}
	return frame
}

func TestListRoundTrip(t *testing.T) {
	keys, rounds, lens := []uint64{3, 1 << 40, 0}, []uint64{7, 0, 1 << 33}, []int{2, 1, 5}
	for _, typ := range []Type{TypePushList, TypePullList} {
		rs := rounds
		if typ == TypePullList {
			rs = nil
		}
		frame := buildList(typ, 9, keys, rs, lens)
		var m Msg
		if err := Decode(frame, nil, &m); err != nil {
			t.Fatalf("%v: %v", typ, err)
		}
		if m.Count != 3 || m.Total != 8 || m.Seq != 9 {
			t.Fatalf("%v: header %+v", typ, m.Header)
		}
		ks, got, data, err := DecodeList(&m, nil, nil, nil)
		if err != nil {
			t.Fatalf("%v: %v", typ, err)
		}
		if !reflect.DeepEqual(ks, keys) || !reflect.DeepEqual(got, rs) {
			t.Fatalf("%v: keys %v rounds %v", typ, ks, got)
		}
		if typ == TypePushList {
			if len(data) != 32 || !reflect.DeepEqual(m.Data(), data) {
				t.Fatalf("data of %d bytes, Data() %d", len(data), len(m.Data()))
			}
			v := make([]float32, 8)
			DecodeFloat32s(data, v)
			if v[7] != 7 {
				t.Fatalf("values %v", v)
			}
		} else if data != nil {
			t.Fatal("pull list with data")
		}
	}
}

func TestListBad(t *testing.T) {
	good := buildList(TypePushList, 1, []uint64{1, 2}, []uint64{0, 0}, []int{2, 2})
	var hdr Header
	if err := DecodeHeader(good, nil, &hdr); err != nil {
		t.Fatal(err)
	}
	mut := func(f func(h *Header)) []byte {
		h := hdr
		f(&h)
		return append(AppendHeader(nil, &h), good[HeaderSize:]...)
	}
	cases := map[string]struct {
		frame []byte
		code  Code
	}{
		"no keys":        {mut(func(h *Header) { h.Count = 0 }), CodeBadFrame},
		"too many keys":  {mut(func(h *Header) { h.Count = 1 << 30 }), CodeLimit},
		"huge total":     {mut(func(h *Header) { h.Total = 1 << 31 }), CodeLimit},
		"total < keys":   {mut(func(h *Header) { h.Total = 1 }), CodeBadFrame},
		"key in header":  {mut(func(h *Header) { h.Key = 1 }), CodeBadFrame},
		"odd flags":      {mut(func(h *Header) { h.Flags = FlagLate }), CodeBadFrame},
		"no dtype":       {mut(func(h *Header) { h.DType = DTypeNone }), CodeBadFrame},
		"2bit":           {mut(func(h *Header) { h.DType = DType2Bit }), CodeBadFrame},
		"short values":   {mut(func(h *Header) { h.Total = 5 }), CodeBadFrame},
		"more keys":      {mut(func(h *Header) { h.Count = 3 }), CodeBadFrame},
		"fewer elements": {mut(func(h *Header) { h.Total = 3 }), CodeBadFrame},
	}
	for name, c := range cases {
		var m Msg
		err := Decode(c.frame, nil, &m)
		if err == nil {
			_, _, _, err = DecodeList(&m, nil, nil, nil)
		}
		var we *Error
		if !errors.As(err, &we) || we.Code != c.code {
			t.Errorf("%s: got %v, want code %v", name, err, c.code)
		}
	}
	// Non-zero padding.
	frame := buildList(TypePullList, 1, []uint64{1}, nil, []int{3})
	frame[len(frame)-1] = 1
	var m Msg
	if err := Decode(frame, nil, &m); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := DecodeList(&m, nil, nil, nil); err == nil {
		t.Fatal("non-zero padding accepted")
	}
}

func TestListAnswer(t *testing.T) {
	rs := []ListResult{{0, 0, CodeOK}, {-3, FlagLate, CodeOK}, {0, 0, CodeShape}, {1 << 40, FlagRescaled, CodeOK}}
	p := AppendListAnswer(nil, rs, "key 2: shape")
	m := Msg{Header: Header{Type: TypeAck, Flags: FlagList, Count: 4}, Payload: p}
	got, text, err := DecodeListAnswer(&m, 4, nil)
	if err != nil || !reflect.DeepEqual(got, rs) || text != "key 2: shape" {
		t.Fatalf("%v %q %v", got, text, err)
	}
	if _, ok := UniformList(rs); ok {
		t.Fatal("uniform")
	}
	u := []ListResult{{Flags: FlagRescaled}, {Flags: FlagRescaled}}
	f, ok := UniformList(u)
	if !ok || f != FlagRescaled {
		t.Fatal("not uniform")
	}
	m = Msg{Header: Header{Type: TypeAck, Flags: FlagList | FlagDup | f, Count: 2}}
	got, _, err = DecodeListAnswer(&m, 2, nil)
	if err != nil || !reflect.DeepEqual(got, u) {
		t.Fatalf("%v %v", got, err)
	}
	for i := range len(p) - 1 {
		m := Msg{Header: Header{Type: TypeAck, Flags: FlagList, Count: 4}, Payload: p[:i+1]}
		if _, _, err := DecodeListAnswer(&m, 4, nil); err == nil {
			t.Fatalf("prefix of %d bytes accepted", i+1)
		}
	}
}

// FuzzList: no input makes the list decoders panic; a decoded list
// re-encodes to the same frame.
func FuzzList(f *testing.F) {
	f.Add(buildList(TypePushList, 1, []uint64{1, 300}, []uint64{0, 5}, []int{1, 3}))
	f.Add(buildList(TypePullList, 2, []uint64{1, 2, 3}, nil, []int{1, 1, 1}))
	f.Fuzz(func(t *testing.T, frame []byte) {
		var m Msg
		if err := Decode(frame, nil, &m); err != nil || !m.Type.IsList() {
			return
		}
		ks, rs, data, err := DecodeList(&m, nil, nil, nil)
		if err != nil {
			return
		}
		var b ListBuilder
		b.Reset(m.Type, len(ks))
		for i, k := range ks {
			var r uint64
			if rs != nil {
				r = rs[i]
			}
			b.Add(k, r)
		}
		h := b.ListHeader(m.Seq, m.Ack, m.Flags, int(m.Total))
		again := append(AppendHeader(nil, &h), b.Table()...)
		again = append(again, data...)
		var m2 Msg
		if err := Decode(again, nil, &m2); err != nil {
			t.Fatalf("re-encoded list does not decode: %v", err)
		}
		ks2, rs2, data2, err := DecodeList(&m2, nil, nil, nil)
		if err != nil || !reflect.DeepEqual(ks, ks2) || !reflect.DeepEqual(rs, rs2) || string(data) != string(data2) {
			t.Fatalf("re-encoded list differs: %v", err)
		}
	})
}

// TestListUvarint checks DecodeList's unrolled varint reader against
// binary.Uvarint on seeded random bytes (short, long, non-minimal,
// overlong and truncated encodings, read at every position).
func TestListUvarint(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	for trial := range 20000 {
		b := make([]byte, r.IntN(14))
		for i := range b {
			b[i] = byte(r.IntN(256))
			if r.IntN(3) == 0 {
				b[i] &= 0x7f // end a varint here
			}
		}
		for at := 0; at <= len(b); at++ {
			v, next := listUvarint(b, at)
			want, w := binary.Uvarint(b[at:])
			if w <= 0 {
				if next > at {
					t.Fatalf("trial %d: % x at %d: read %d up to %d, binary.Uvarint fails (%d)", trial, b, at, v, next, w)
				}
				continue
			}
			if v != want || next != at+w {
				t.Fatalf("trial %d: % x at %d: %d up to %d, want %d up to %d", trial, b, at, v, next, want, at+w)
			}
		}
	}
}

// BenchmarkDecodeList decodes the tables of a push list and a pull list of
// 4,096 keys of 16 floats (ids 60,000 up: three-byte uvarints, as most of
// relay's BenchmarkManyKeys are), the server's per-list decode; ns/key is
// one key's push and pull entries.
func BenchmarkDecodeList(b *testing.B) {
	const n, elems = 4096, 16
	ids, rounds, lens := make([]uint64, n), make([]uint64, n), make([]int, n)
	for i := range ids {
		ids[i], rounds[i], lens[i] = uint64(60_000+i), 300, elems
	}
	lim := &Limits{MaxPayload: 1 << 24}
	var push, pull Msg
	for _, x := range []struct {
		m   *Msg
		typ Type
	}{{&push, TypePushList}, {&pull, TypePullList}} {
		if err := Decode(buildList(x.typ, 1, ids, rounds, lens), lim, x.m); err != nil {
			b.Fatal(err)
		}
	}
	var ks, rs []uint64
	b.ResetTimer()
	for range b.N {
		var err error
		if ks, rs, _, err = DecodeList(&push, lim, ks[:0], rs[:0]); err != nil {
			b.Fatal(err)
		}
		if ks, rs, _, err = DecodeList(&pull, lim, ks[:0], rs[:0]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/key")
}
