package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
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
		ks, got, data, err := decodeList(&m, nil, nil, nil)
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
			_, _, _, err = decodeList(&m, nil, nil, nil)
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
	if _, _, _, err := decodeList(&m, nil, nil, nil); err == nil {
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

// FuzzList: no input makes the list decoders panic; a decoded list's runs
// hold exactly its keys, each at least one, without wrapping, at most one
// per key; a decoded list re-encodes (as runs) to the same keys, rounds
// and values.
func FuzzList(f *testing.F) {
	const max = ^uint64(0)
	f.Add(buildList(TypePushList, 1, []uint64{1, 300}, []uint64{0, 5}, []int{1, 3}))
	f.Add(buildList(TypePullList, 2, []uint64{1, 2, 3}, nil, []int{1, 1, 1}))
	f.Add(buildList(TypePushList, 3, []uint64{7, 8, 9, 10, 2}, []uint64{1, 1, 2, 2, 2}, []int{1, 1, 1, 2, 1}))
	f.Add(buildList(TypePullList, 4, []uint64{max - 1, max, 0, 1}, nil, []int{1, 1, 1, 1}))
	// Tables of one entry per key (a client older than FlagRuns).
	f.Add(listFrame(TypePushList, 0, 3, 3, perKeyTable(TypePushList, []uint64{5, 6, 1 << 40}, []uint64{1, 1, 0})))
	f.Add(listFrame(TypePullList, FlagStrKey, 2, 2, perKeyTable(TypePullList, []uint64{max, 0}, nil)))
	// Bad run tables: short, over, wrapping, trailing bytes.
	f.Add(listFrame(TypePullList, FlagRuns, 5, 5, []byte{1, 2, 9, 0}))
	f.Add(listFrame(TypePullList, FlagRuns, 3, 3, []byte{1, 1, 5, 1}))
	f.Add(listFrame(TypePullList, FlagRuns, 2, 2, append(binary.AppendUvarint(nil, max), 1, 0)))
	f.Add(listFrame(TypePushList, FlagRuns, 1, 1, []byte{1, 0, 0, 0, 0, 0, 0, 0}))
	f.Fuzz(func(t *testing.T, frame []byte) {
		var m Msg
		if err := Decode(frame, nil, &m); err != nil || !m.Type.IsList() {
			return
		}
		runs, rdata, rerr := DecodeListRuns(&m, nil, nil)
		ks, rs, data, err := decodeList(&m, nil, nil, nil)
		if (err == nil) != (rerr == nil) || string(data) != string(rdata) {
			t.Fatalf("DecodeList: %v, DecodeListRuns: %v", err, rerr)
		}
		if err != nil {
			return
		}
		sum := uint64(0)
		for _, r := range runs {
			if r.Count == 0 || r.First+(r.Count-1) < r.First || (m.Type == TypePullList && r.Round != 0) {
				t.Fatalf("run %+v", r)
			}
			sum += r.Count
		}
		if sum != uint64(m.Count) || len(runs) > int(m.Count) || len(ks) != int(m.Count) {
			t.Fatalf("%d runs of %d keys (%d spelled out), the header says %d", len(runs), sum, len(ks), m.Count)
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
		ks2, rs2, data2, err := decodeList(&m2, nil, nil, nil)
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
// relay's BenchmarkManyKeys are) with DecodeListRuns, the server's
// per-list decode: as ListBuilder writes them (runs) and as an older
// client does (one entry per key); ns/key is one key's push and pull.
func BenchmarkDecodeList(b *testing.B) {
	const n, elems = 4096, 16
	ids, rounds, lens := make([]uint64, n), make([]uint64, n), make([]int, n)
	for i := range ids {
		ids[i], rounds[i], lens[i] = uint64(60_000+i), 300, elems
	}
	lim := &Limits{MaxPayload: 1 << 24}
	for _, perKey := range []bool{false, true} {
		name := "runs"
		if perKey {
			name = "perkey"
		}
		b.Run(name, func(b *testing.B) {
			var push, pull Msg
			for _, x := range []struct {
				m   *Msg
				typ Type
			}{{&push, TypePushList}, {&pull, TypePullList}} {
				f := buildList(x.typ, 1, ids, rounds, lens)
				if perKey {
					f = listFrame(x.typ, 0, n, n*elems, perKeyTable(x.typ, ids, rounds))
				}
				if err := Decode(f, lim, x.m); err != nil {
					b.Fatal(err)
				}
			}
			var runs []ListRun
			b.ResetTimer()
			for range b.N {
				var err error
				if runs, _, err = DecodeListRuns(&push, lim, runs[:0]); err != nil || len(runs) != 1 {
					b.Fatal(err, len(runs))
				}
				if runs, _, err = DecodeListRuns(&pull, lim, runs[:0]); err != nil || len(runs) != 1 {
					b.Fatal(err, len(runs))
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/key")
		})
	}
}

// perKeyTable is the padded key table of one entry per key that a client
// older than FlagRuns writes.
func perKeyTable(typ Type, keys, rounds []uint64) []byte {
	var t []byte
	for i, k := range keys {
		t = binary.AppendUvarint(t, k)
		if typ == TypePushList {
			t = binary.AppendUvarint(t, rounds[i])
		}
	}
	return append(t, make([]byte, pad4(len(t)))...)
}

// listFrame is a list request of typ with key table table (flags in the
// header), count keys and total elements (values 0 for a push).
func listFrame(typ Type, flags uint16, count, total uint32, table []byte) []byte {
	h := Header{Type: typ, Flags: flags, Seq: 1, Count: count, Total: total, PLen: uint32(len(table))}
	var vals []byte
	if typ == TypePushList {
		h.DType = DTypeF32
		vals = make([]byte, 4*total)
		h.PLen += uint32(len(vals))
	}
	return append(append(AppendHeader(nil, &h), table...), vals...)
}

func decodeRuns(t *testing.T, frame []byte) ([]ListRun, []byte, error) {
	t.Helper()
	var m Msg
	if err := Decode(frame, nil, &m); err != nil {
		return nil, nil, err
	}
	return DecodeListRuns(&m, nil, nil)
}

// TestListRuns: ListBuilder writes runs of consecutive ids (one round in a
// push list), which DecodeListRuns gives back as they were and DecodeList
// spells out; ids at both ends of the id space and a run that would pass
// the largest id are split, never wrapped.
func TestListRuns(t *testing.T) {
	const max = ^uint64(0)
	cases := []struct {
		name         string
		keys, rounds []uint64
		push, pull   []ListRun // the runs of a push list, of a pull list
	}{
		{"one", []uint64{0}, []uint64{0}, []ListRun{{0, 1, 0}}, []ListRun{{0, 1, 0}}},
		{"consecutive", []uint64{0, 1, 2, 3}, []uint64{5, 5, 5, 5}, []ListRun{{0, 4, 5}}, []ListRun{{0, 4, 0}}},
		{"rounds split a push", []uint64{7, 8, 9, 10}, []uint64{1, 1, 2, 2}, []ListRun{{7, 2, 1}, {9, 2, 2}}, []ListRun{{7, 4, 0}}},
		{"gaps and order", []uint64{3, 4, 9, 2, 3, 3}, []uint64{0, 0, 0, 0, 0, 0}, []ListRun{{3, 2, 0}, {9, 1, 0}, {2, 2, 0}, {3, 1, 0}}, []ListRun{{3, 2, 0}, {9, 1, 0}, {2, 2, 0}, {3, 1, 0}}},
		{"round 0 after 0", []uint64{0, 1}, []uint64{1, 0}, []ListRun{{0, 1, 1}, {1, 1, 0}}, []ListRun{{0, 2, 0}}},
		{"largest ids", []uint64{max - 2, max - 1, max}, []uint64{9, 9, 9}, []ListRun{{max - 2, 3, 9}}, []ListRun{{max - 2, 3, 0}}},
		{"past the largest id", []uint64{max - 1, max, 0, 1}, []uint64{4, 4, 4, 4}, []ListRun{{max - 1, 2, 4}, {0, 2, 4}}, []ListRun{{max - 1, 2, 0}, {0, 2, 0}}},
		{"largest id alone", []uint64{max, 0}, []uint64{1, 1}, []ListRun{{max, 1, 1}, {0, 1, 1}}, []ListRun{{max, 1, 0}, {0, 1, 0}}},
	}
	for _, c := range cases {
		lens := make([]int, len(c.keys))
		for i := range lens {
			lens[i] = 1 + i%3
		}
		for _, typ := range []Type{TypePushList, TypePullList} {
			rounds, want := c.rounds, c.push
			if typ == TypePullList {
				rounds, want = nil, c.pull
			}
			frame := buildList(typ, 1, c.keys, rounds, lens)
			runs, _, err := decodeRuns(t, frame)
			if err != nil || !reflect.DeepEqual(runs, want) {
				t.Errorf("%s, %v: runs %v (%v), want %v", c.name, typ, runs, err, want)
				continue
			}
			var m Msg
			if err := Decode(frame, nil, &m); err != nil || m.Flags&FlagRuns == 0 {
				t.Fatalf("%s: %v, flags %#x", c.name, err, m.Flags)
			}
			ks, rs, _, err := decodeList(&m, nil, nil, nil)
			if err != nil || !reflect.DeepEqual(ks, c.keys) || !reflect.DeepEqual(rs, rounds) {
				t.Errorf("%s, %v: keys %v rounds %v (%v)", c.name, typ, ks, rs, err)
			}
		}
	}
}

// TestListBuilderTable: Len, Table and ListHeader may be called in any
// order and again, and a run costs its first id, one byte of count and
// its round whatever its keys.
func TestListBuilderTable(t *testing.T) {
	var b ListBuilder
	for round := range 2 {
		b.Reset(TypePushList, 4096)
		for k := range 4096 {
			b.Add(uint64(60_000+k), 300)
		}
		if b.Len() != 4096 {
			t.Fatalf("Len %d", b.Len())
		}
		h := b.ListHeader(1, 1, FlagStrKey, 4096)
		t1 := string(b.Table())
		t2 := string(b.Table())
		// 60,000: 3 bytes, 4,095: 2 bytes, 300: 2 bytes; padded to 8.
		if t1 != t2 || len(t1) != 8 || h.Count != 4096 || h.Flags != FlagStrKey|FlagRuns || h.PLen != 8+4*4096 {
			t.Fatalf("reset %d: table %x (again %x), header %+v", round, t1, t2, h)
		}
	}
}

// TestListRandomIDs: keys in no order (string keys are 64-bit hashes)
// cost at most one byte more each in a run table than in a table of one
// entry per key.
func TestListRandomIDs(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	for trial := range 200 {
		n := 1 + r.IntN(2000)
		keys, rounds := make([]uint64, n), make([]uint64, n)
		for i := range keys {
			keys[i], rounds[i] = r.Uint64()>>r.IntN(64), r.Uint64N(1000)
		}
		for _, typ := range []Type{TypePushList, TypePullList} {
			var b ListBuilder
			b.Reset(typ, n)
			for i, k := range keys {
				b.Add(k, rounds[i])
			}
			b.Table()
			runs, old := len(b.table), len(perKeyTable(typ, keys, rounds)) // without the padding, with
			old -= pad4(old)
			if runs > old+n {
				t.Fatalf("trial %d, %v of %d keys: %d bytes of runs, %d of one entry a key", trial, typ, n, runs, old)
			}
		}
	}
}

// TestListOldTable: a table of one entry per key (no FlagRuns: a client
// older than runs) still decodes, its consecutive keys joined into runs.
func TestListOldTable(t *testing.T) {
	keys, rounds := []uint64{5, 6, 7, 1 << 40, 2, 3}, []uint64{1, 1, 2, 0, 0, 0}
	for _, typ := range []Type{TypePushList, TypePullList} {
		rs, want := rounds, []ListRun{{5, 2, 1}, {7, 1, 2}, {1 << 40, 1, 0}, {2, 2, 0}}
		if typ == TypePullList {
			rs, want = nil, []ListRun{{5, 3, 0}, {1 << 40, 1, 0}, {2, 2, 0}}
		}
		frame := listFrame(typ, 0, 6, 6, perKeyTable(typ, keys, rounds))
		runs, data, err := decodeRuns(t, frame)
		if err != nil || !reflect.DeepEqual(runs, want) || (typ == TypePushList) != (len(data) == 24) {
			t.Fatalf("%v: runs %v, %d bytes of data (%v), want %v", typ, runs, len(data), err, want)
		}
		var m Msg
		if err := Decode(frame, nil, &m); err != nil {
			t.Fatal(err)
		}
		ks, got, _, err := decodeList(&m, nil, nil, nil)
		if err != nil || !reflect.DeepEqual(ks, keys) || !reflect.DeepEqual(got, rs) {
			t.Fatalf("%v: keys %v rounds %v (%v)", typ, ks, got, err)
		}
	}
}

// TestListRunsBad: a run table that does not hold exactly Count keys of
// ids that do not wrap, in entries that are whole, with nothing after the
// padding, is a bad frame that names what was wrong.
func TestListRunsBad(t *testing.T) {
	const max = ^uint64(0)
	table := func(push bool, nums ...uint64) []byte {
		var b []byte
		for _, v := range nums {
			b = binary.AppendUvarint(b, v)
		}
		return append(b, make([]byte, pad4(len(b)))...)
	}
	cases := []struct {
		name  string
		typ   Type
		count uint32
		table []byte
		want  string
	}{
		{"counts sum short", TypePullList, 5, table(false, 1, 2, 9, 0), "the key table ends in entry 2 (key id), after 4 of 5 keys"},
		{"counts sum short (push)", TypePushList, 5, table(true, 1, 2, 0), "the key table ends in entry 1 (run length), after 3 of 5 keys"},
		{"counts sum over", TypePullList, 3, table(false, 1, 1, 5, 1), "entry 1: a run of 1+1 keys exceeds the 1 keys left of 3"},
		{"one run over", TypePushList, 2, table(true, 1, 2, 0), "entry 0: a run of 2+1 keys exceeds the 2 keys left of 2"},
		{"empty run (count wraps)", TypePullList, 1, table(false, 1, max), "a run of 18446744073709551615+1 keys exceeds"},
		{"ids overflow", TypePullList, 2, table(false, max, 1), "entry 0: a run of 2 keys from id 18446744073709551615 passes the largest id"},
		{"largest ids", TypePushList, 3, table(true, 1, 0, 0, max-1, 1, 0), ""},
		{"ids overflow later", TypePushList, 3, table(true, 1, 0, 0, max, 1, 0), "entry 1: a run of 2 keys from id 18446744073709551615 passes the largest id"},
		{"no count", TypePullList, 1, []byte{1, 0x80, 0x80, 0x80}, "the key table ends in entry 0 (run length), after 0 of 1 keys"},
		{"no round", TypePushList, 1, []byte{1, 0, 0x80, 0x80}, "the key table ends in entry 0 (round)"},
		{"overlong id", TypePullList, 1, append(bytes.Repeat([]byte{0xff}, 10), 0x01, 0, 0, 0, 0, 0), "entry 0: malformed key id"},
		{"trailing bytes", TypePullList, 1, table(false, 1, 0, 0, 0, 0), "6 bytes after the table of 1 keys, want 2 padding + 0 bytes of values"},
		{"trailing bytes (push)", TypePushList, 1, table(true, 1, 0, 0, 0, 0, 0), "9 bytes after the table of 1 keys, want 1 padding + 4 bytes of values"},
		{"non-zero padding", TypePullList, 1, []byte{1, 0, 0, 1}, "non-zero padding"},
	}
	for _, c := range cases {
		_, _, err := decodeRuns(t, listFrame(c.typ, FlagRuns, c.count, c.count, c.table))
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		var we *Error
		if !errors.As(err, &we) || we.Code != CodeBadFrame || !strings.Contains(we.Msg, c.want) {
			t.Errorf("%s: got %v, want a bad frame saying %q", c.name, err, c.want)
		}
	}
	// The header alone refuses a run table that cannot fit its payload,
	// and flags it does not know (as a server older than FlagRuns refuses
	// FlagRuns).
	for name, f := range map[string][]byte{
		"no room":      listFrame(TypePullList, FlagRuns, 1, 1, nil),
		"unknown flag": listFrame(TypePullList, FlagRuns<<1, 1, 1, table(false, 1, 0)),
	} {
		if _, _, err := decodeRuns(t, f); !errors.Is(err, &Error{Code: CodeBadFrame}) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestListShortPayload: a list Msg whose payload is shorter than its
// header says (made by hand, not by Decode) is refused, not sliced.
func TestListShortPayload(t *testing.T) {
	frame := buildList(TypePushList, 1, []uint64{1, 2}, []uint64{0, 0}, []int{2, 2})
	var m Msg
	if err := Decode(frame, nil, &m); err != nil {
		t.Fatal(err)
	}
	m.Payload = m.Payload[:8]
	if _, _, err := DecodeListRuns(&m, nil, nil); !errors.Is(err, &Error{Code: CodeBadFrame}) {
		t.Fatalf("got %v", err)
	}
}

// decodeList is DecodeListRuns with the runs spelled out: it appends the
// list's key ids to keys and, for a push list, their rounds to rounds.
func decodeList(m *Msg, lim *Limits, keys, rounds []uint64) ([]uint64, []uint64, []byte, error) {
	runs, data, err := DecodeListRuns(m, lim, nil)
	if err != nil {
		return keys, rounds, nil, err
	}
	for _, r := range runs {
		for id := r.First; id-r.First < r.Count; id++ {
			keys = append(keys, id)
			if m.Type == TypePushList {
				rounds = append(rounds, r.Round)
			}
		}
	}
	return keys, rounds, data, nil
}
