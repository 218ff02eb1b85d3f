package updater_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/webkv/webkv/kvcore/updater"
)

var wasm = []byte("\x00asm\x01\x00\x00\x00rest")

func TestModuleEncoding(t *testing.T) {
	for _, m := range []updater.Module{{Code: wasm}, {Code: wasm, Config: []byte("lr=0.1")}} {
		b, err := m.AppendBinary([]byte("prefix"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := updater.DecodeModule(b[len("prefix"):], 0)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Code, m.Code) || !bytes.Equal(got.Config, m.Config) || got.Hash() != m.Hash() {
			t.Fatalf("round trip of %+v gave %+v", m, got)
		}
	}
	good, _ := (&updater.Module{Code: wasm, Config: []byte("x")}).AppendBinary(nil)
	bad := []struct {
		name string
		b    []byte
		max  int
		want string
	}{
		{"empty", nil, 0, "magic"},
		{"magic", []byte("WKUX\x01\x00" + string(wasm)), 0, "magic"},
		{"version", []byte("WKUM\x02\x00" + string(wasm)), 0, "version 2"},
		{"config length", []byte("WKUM\x01\x7f" + string(wasm)), 0, "config length"},
		{"not wasm", []byte("WKUM\x01\x00garbage!"), 0, "not a WebAssembly binary"},
		{"too big", good, 8, "above the limit of 8"},
	}
	for _, c := range bad {
		if _, err := updater.DecodeModule(c.b, c.max); !errors.Is(err, updater.ErrBadModule) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrBadModule saying %q", c.name, err, c.want)
		}
	}
	// Every truncation of a good encoding before the code's eighth byte is
	// refused (a cut inside the code makes another module: its hash
	// differs, and the host's compiler refuses it).
	for n := range len(good) - len(wasm) + 8 {
		if _, err := updater.DecodeModule(good[:n], 0); err == nil {
			t.Fatalf("truncated to %d of %d bytes: accepted", n, len(good))
		}
	}
	if _, err := (&updater.Module{Code: wasm, Config: make([]byte, updater.MaxConfig+1)}).AppendBinary(nil); !errors.Is(err, updater.ErrBadModule) {
		t.Fatalf("oversized config: %v", err)
	}
}

func TestHash(t *testing.T) {
	h := (&updater.Module{Code: wasm}).Hash()
	for _, s := range []string{h.String(), strings.TrimPrefix(h.String(), "sha256:"), " " + h.String() + " "} {
		if got, err := updater.ParseHash(s); err != nil || got != h {
			t.Fatalf("ParseHash(%q) = %v, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "sha256:beef", "md5:" + strings.Repeat("0", 64), strings.Repeat("g", 64)} {
		if _, err := updater.ParseHash(s); err == nil {
			t.Fatalf("ParseHash(%q) accepted", s)
		}
	}
}

func TestMarker(t *testing.T) {
	m := &updater.Module{Code: wasm, Config: []byte("a=1")}
	mk := updater.Marker(m)
	if !updater.IsMarker(mk) || updater.IsMarker([]byte(`{"name":"sgd"}`)) || updater.IsMarker(nil) {
		t.Fatal("IsMarker")
	}
	if err := updater.CheckMarker(mk, m); err != nil {
		t.Fatal(err)
	}
	if err := updater.CheckMarker(mk, &updater.Module{Code: wasm, Config: []byte("a=2")}); err == nil || !strings.Contains(err.Error(), "config") {
		t.Fatalf("other config: %v", err)
	}
	if err := updater.CheckMarker(mk, &updater.Module{Code: append(slices.Clone(wasm), 0)}); err == nil || !strings.Contains(err.Error(), "installed one") {
		t.Fatalf("other module: %v", err)
	}
	if err := updater.CheckMarker(mk, nil); err == nil || !strings.Contains(err.Error(), "none is installed") {
		t.Fatalf("no module: %v", err)
	}
}

// inst counts calls; its update adds recv and counts into the first
// state, and fails when fail is set.
type inst struct {
	states, inits, updates int
	fail                   error
}

func (i *inst) Hash() updater.Hash { return updater.Hash{} }
func (i *inst) NumStates(context.Context, *updater.Call) (int, error) {
	return i.states, nil
}
func (i *inst) Init(_ context.Context, c *updater.Call) error {
	i.inits++
	if c.Recv != nil || len(c.States) != i.states {
		return errors.New("init got recv or the wrong states")
	}
	copy(c.States[0], c.Stored)
	return nil
}
func (i *inst) Update(_ context.Context, c *updater.Call) error {
	i.updates++
	if i.fail != nil {
		return i.fail
	}
	for j, g := range c.Recv {
		c.Stored[j] += g
		c.States[0][j]++
	}
	return nil
}
func (i *inst) Close() error { return nil }

// Step creates and initializes the states once, passes the update count,
// and advances it only on success.
func TestStep(t *testing.T) {
	in := &inst{states: 1}
	var st updater.State
	c := &updater.Call{Recv: []float32{1, 2}, Stored: []float32{10, 20}}
	for k := 1; k <= 2; k++ {
		if err := updater.Step(context.Background(), in, c, &st, nil); err != nil {
			t.Fatal(err)
		}
		if c.T != k || st.T != k || !st.Ready() {
			t.Fatalf("update %d: call t %d, state t %d", k, c.T, st.T)
		}
	}
	if in.inits != 1 || in.updates != 2 || !slices.Equal(st.States[0], []float32{12, 22}) || !slices.Equal(c.Stored, []float32{12, 24}) {
		t.Fatalf("inits %d updates %d states %v stored %v", in.inits, in.updates, st.States, c.Stored)
	}
	in.fail = errors.New("no")
	if err := updater.Step(context.Background(), in, c, &st, nil); err == nil || st.T != 2 {
		t.Fatalf("failed update: %v, t %d (want 2)", err, st.T)
	}
	if err := updater.CheckStates(context.Background(), in, c, [][]float32{{1, 2}}); err != nil {
		t.Fatal(err)
	}
	if err := updater.CheckStates(context.Background(), in, c, [][]float32{{1, 2}, {3, 4}}); err == nil {
		t.Fatal("two states for a module that needs one: accepted")
	}
	if err := updater.CheckStates(context.Background(), in, c, [][]float32{{1}}); err == nil {
		t.Fatal("a state of the wrong length: accepted")
	}
	st.Reset()
	if st.Ready() || st.T != 0 {
		t.Fatal("Reset")
	}
}
