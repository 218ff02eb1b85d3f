package bincodec

import (
	"bytes"
	"errors"
	"io"
	"math"
	"reflect"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	f := []float32{1, -2.5, float32(math.Inf(1)), 0}
	b := Enc(nil).U8(7).U16(0xbeef).U32(1 << 31).U64(1<<63 + 5).Uvarint(300).Bool(true).Bool(false).
		Bytes([]byte("ab")).String("héllo").Float32s(f)
	d := NewDec(b)
	got := []any{d.U8("a"), d.U16("b"), d.U32("c"), d.U64("d"), d.Uvarint("e"), d.Bool("f"), d.Bool("g"),
		d.Bytes("h", 10), d.String("i", 10), d.Float32s("j", 4, nil)}
	d.Done()
	if d.Err != nil {
		t.Fatal(d.Err)
	}
	want := []any{uint8(7), uint16(0xbeef), uint32(1 << 31), uint64(1<<63 + 5), uint64(300), true, false,
		[]byte("ab"), "héllo", f}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded %v, want %v", got, want)
	}
}

// Each kind of failure, where it happened, and that reads after it return
// zero values without replacing the first error.
func TestFailures(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		in   []byte
		read func(d *Dec)
		kind Kind
		off  int64
	}{
		{"truncated u32", []byte{1, 2, 3}, func(d *Dec) { d.U32("x") }, Truncated, 0},
		{"truncated after a byte", []byte{9, 1}, func(d *Dec) { d.U8("a"); d.U16("b") }, Truncated, 1},
		{"empty uvarint", nil, func(d *Dec) { d.Uvarint("n") }, Truncated, 0},
		{"overlong uvarint", bytes.Repeat([]byte{0xff}, 11), func(d *Dec) { d.Uvarint("n") }, Malformed, 0},
		{"string over its limit", Enc(nil).String("abcdef"), func(d *Dec) { d.String("s", 5) }, Limit, 1},
		{"length past the input", Enc(nil).Uvarint(1 << 40), func(d *Dec) { d.Bytes("b", 1<<50) }, Truncated, 6},
		{"count past the input", Enc(nil).Uvarint(1000).U64(1), func(d *Dec) { d.Count("items", 8, 1<<20) }, Truncated, 2},
		{"count over its limit", Enc(nil).Uvarint(1000), func(d *Dec) { d.Count("items", 1, 10) }, Limit, 2},
		{"bool 2", []byte{2}, func(d *Dec) { d.Bool("flag") }, Malformed, 1},
		{"trailing", []byte{1, 2}, func(d *Dec) { d.U8("a"); d.Done() }, Malformed, 1},
		{"floats past the input", []byte{1, 2, 3, 4}, func(d *Dec) { d.Float32s("v", 1<<40, nil) }, Truncated, 0},
	} {
		d := NewDec(c.in)
		c.read(&d)
		if d.Err == nil || d.Err.Kind != c.kind || d.Err.Off != c.off {
			t.Errorf("%s: err %+v, want kind %d at %d", c.name, d.Err, c.kind, c.off)
			continue
		}
		first := d.Err
		if d.U64("after") != 0 || d.String("after", 10) != "" || d.Float32s("after", 1, nil) != nil || d.Err != first {
			t.Errorf("%s: reads after the failure changed something", c.name)
		}
	}
}

func TestFloatViews(t *testing.T) {
	t.Parallel()
	f := []float32{1, 2, 3}
	b := AppendFloat32s(nil, f)
	if v := Float32View(b, nil); !reflect.DeepEqual(v, f) {
		t.Fatalf("view %v", v)
	}
	mis := append([]byte{0}, b...)[1:] // misaligned: decoded into dst
	if v := Float32View(mis, make([]float32, 0, 3)); !reflect.DeepEqual(v, f) {
		t.Fatalf("misaligned view %v", v)
	}
	if v, ok := Float32Bytes(f); ok && !bytes.Equal(v, b) {
		t.Fatalf("bytes %x, want %x", v, b)
	}
}

func TestStream(t *testing.T) {
	t.Parallel()
	big := make([]float32, 3*chunkBytes/4+3)
	for i := range big {
		big[i] = float32(i) / 7
	}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.Raw([]byte("HEAD"))
	w.U8(1)
	w.U16(2)
	w.U32(3)
	w.U64(4)
	w.Float32s(big)
	sum := w.Sum32()
	w.Trailer(sum)
	if w.Err != nil {
		t.Fatal(w.Err)
	}
	in := buf.Bytes()
	r := NewReader(bytes.NewReader(in))
	head, err := r.Bytes(4, "head")
	a, _ := r.U8("a")
	b, _ := r.U16("b")
	c, _ := r.U32("c")
	d, _ := r.U64("d")
	f, ferr := r.Float32s(len(big), 16, "big")
	if err != nil || ferr != nil || string(head) != "HEAD" || a != 1 || b != 2 || c != 3 || d != 4 || !reflect.DeepEqual(f, big) {
		t.Fatalf("read back %q %d %d %d %d (%v, %v)", head, a, b, c, d, err, ferr)
	}
	want := r.Sum32()
	if got, err := r.Trailer("sum"); err != nil || got != want || want != sum {
		t.Fatalf("checksum %x / %x / %x: %v", got, want, sum, err)
	}
	// A cut input: Truncated, at the field that was cut.
	r = NewReader(bytes.NewReader(in[:15]))
	r.Bytes(4, "head")
	r.U8("a")
	r.U16("b")
	r.U32("c")
	_, err = r.U64("d")
	var e *Error
	if !errors.As(err, &e) || e.Kind != Truncated || e.Off != 11 {
		t.Fatalf("cut input: %v", err)
	}
	// A failing reader: Malformed.
	r = NewReader(io.MultiReader(bytes.NewReader([]byte{1}), errReader{}))
	if _, err := r.U16("x"); !errors.As(err, &e) || e.Kind != Malformed {
		t.Fatalf("failing reader: %v", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

// FuzzDec reads a fixed record from arbitrary bytes: nothing panics, and
// what decodes re-encodes to a record that decodes to the same values (the
// same bytes, unless the input used a non-minimal uvarint).
func FuzzDec(f *testing.F) {
	f.Add([]byte(Enc(nil).U8(1).String("abc").Uvarint(2).Float32s([]float32{1, 2})))
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff})
	type rec struct {
		x uint8
		s string
		v []float32
	}
	read := func(b []byte) (rec, *Error) {
		d := NewDec(b)
		var r rec
		r.x = d.U8("x")
		r.s = d.String("s", 64)
		n := d.Count("n", 4, 1<<10)
		r.v = d.Float32s("v", n, nil)
		d.Done()
		return r, d.Err
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := read(b)
		if err != nil {
			return
		}
		re := Enc(nil).U8(r.x).String(r.s).Uvarint(uint64(len(r.v))).Float32s(r.v)
		r2, err := read(re)
		if err != nil || r2.x != r.x || r2.s != r.s || !bytes.Equal(AppendFloat32s(nil, r2.v), AppendFloat32s(nil, r.v)) {
			t.Fatalf("%x re-encodes as %x, which decodes to %+v (%v), not %+v", b, re, r2, err, r)
		}
		if len(re) > len(b) {
			t.Fatalf("%x re-encodes longer: %x", b, re)
		}
	})
}
