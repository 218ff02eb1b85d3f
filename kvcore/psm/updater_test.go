package psm

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"

	"github.com/webkv/webkv/kvcore/updater"
	"github.com/webkv/webkv/kvcore/wire"
)

// The custom updater's snapshot section is checked like the rest: with a
// valid checksum, every truncation of the section and every changed byte
// in it is either refused with ErrBadSnapshot or restores a consistent Job
// (a changed value or update count); nothing panics, and no module is left
// loaded by a refused snapshot.
func TestUpdaterSnapshotSection(t *testing.T) {
	l := &scriptLoader{}
	h := newHarness(t, Config{Updaters: l})
	h.hello(1, 0)
	h.init(1, 5, []float32{1, 2, 3})
	h.init(1, 6, []float32{4})
	m := updater.Module{Code: []byte("\x00asm\x01\x00\x00\x00mom"), Config: []byte("x")}
	body, _ := m.AppendBinary(nil)
	h.step(1, &wire.Msg{Header: wire.Header{Type: wire.TypeCommand, Seq: h.nextSeq(1), Key: updater.CommandHead}, Payload: body})
	h.step(1, dataMsg(wire.TypePush, h.nextSeq(1), 5, 0, []float32{1, 1, 1}))
	if len(h.acks()) != 1 {
		t.Fatal("push not acknowledged")
	}
	full, err := h.j.AppendSnapshot(nil)
	if err != nil {
		t.Fatal(err)
	}
	// The same Job without its updater: the snapshot up to the section.
	cu := h.j.cu
	h.j.cu = nil
	plain, err := h.j.AppendSnapshot(nil)
	h.j.cu = cu
	if err != nil {
		t.Fatal(err)
	}
	start, end := len(plain)-4, len(full)-4
	if string(full[:start]) != string(plain[:start]) {
		t.Fatal("the custom section is not at the end of the snapshot")
	}
	withCRC := func(b []byte) []byte {
		return binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
	}
	try := func(what string, snap []byte) {
		t.Helper()
		live := l.live
		j, err := Restore(Config{Updaters: l}, snap, 0)
		if err != nil {
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("%s: %v, want ErrBadSnapshot", what, err)
			}
			if l.live != live {
				t.Fatalf("%s: refused, but a module instance was loaded", what)
			}
			return
		}
		j.Close()
	}
	j, err := Restore(Config{Updaters: l}, full, 0)
	if err != nil {
		t.Fatal(err)
	}
	if j.cu == nil || j.cu.inst == nil || j.cu.keys[5] == nil || j.cu.keys[5].T != 1 || len(j.cu.keys[5].States) != 1 {
		t.Fatalf("restored custom updater: %+v", j.cu)
	}
	j.Close()
	for n := start + 1; n < end; n++ {
		b := append([]byte(nil), full[:n]...)
		if _, err := Restore(Config{Updaters: l}, withCRC(b), 0); !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("section cut to %d of %d bytes: %v, want ErrBadSnapshot", n-start, end-start, err)
		}
	}
	for i := start; i < end; i++ {
		for _, x := range []byte{0x01, 0x40, 0xff} {
			b := append([]byte(nil), full[:end]...)
			b[i] ^= x
			try("changed byte", withCRC(b))
		}
	}
}
