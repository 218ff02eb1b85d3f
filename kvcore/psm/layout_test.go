package psm

import (
	"testing"
	"time"
	"unsafe"

	"github.com/webkv/webkv/kvcore/wire"
)

// TestKeyLayout keeps what a list request touches of every key in 80
// bytes (see key): a field added to key instead of keyCold or round shows
// here.
func TestKeyLayout(t *testing.T) {
	var k key
	if size := unsafe.Sizeof(k); size > 80 {
		t.Errorf("key is %d bytes, more than 80: put what a round does not touch in keyCold, and the round's state in round", size)
	}
	if size := unsafe.Sizeof(arrival{}); size > 56 {
		t.Errorf("arrival is %d bytes, want at most 56 (a round holds one inline)", size)
	}
}

// TestKeyWholeRestored: key.whole (what a list checks instead of the
// part's bounds, which are in keyCold) is set for created and restored
// keys alike, and is false for a key part.
func TestKeyWholeRestored(t *testing.T) {
	w := newListWorker(t, Config{Job: "w"}, 3, 2)
	m := &wire.Msg{Header: wire.Header{Type: wire.TypeInit, Seq: 99, Ack: 99, Key: 7, DType: wire.DTypeF32, Offset: 3, Count: 3, Total: 6}}
	m.Payload = wire.AppendFloat32s(wire.AppendInitMeta(nil, &wire.InitMeta{Shape: []int64{3, 2}}), []float32{1, 2, 3})
	w.step(wire.Append(nil, m))
	check := func(j *Job, what string) {
		t.Helper()
		if len(j.keys) != 4 {
			t.Fatalf("%s: %d keys, want 4", what, len(j.keys))
		}
		for id, k := range j.keys {
			if want := id != 7; k.whole != want {
				t.Errorf("%s: key %d (part [%d, +%d) of %d): whole %v, want %v", what, id, k.off, k.n, k.total, k.whole, want)
			}
		}
	}
	check(w.j, "created")
	snap, err := w.j.AppendSnapshot(nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Restore(Config{Job: "w"}, snap, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	check(r, "restored")
}
