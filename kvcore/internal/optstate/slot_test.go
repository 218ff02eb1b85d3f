package optstate

import (
	"errors"
	"testing"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/optimizer"
)

func spec(t *testing.T, js string) *optimizer.Spec {
	t.Helper()
	s, err := optimizer.Parse([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Step allocates the spec's states on the first update, keeps them while
// the optimizer keeps them, and Reset starts again.
func TestSlotStep(t *testing.T) {
	t.Parallel()
	be := compute.NewCPU(nil)
	w, _ := be.Alloc(4)
	g, _ := be.Alloc(4)
	if err := be.Write(g, 0, []float32{1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	var sl Slot
	adam := spec(t, `{"name":"adam","learning_rate":0.1}`)
	for i := range 3 {
		sl.T++
		if err := sl.Step(be, adam, "0", 4, sl.T, w, g); err != nil {
			t.Fatal(err)
		}
		if len(sl.States) != 2 || sl.Params.T != float32(i+1) {
			t.Fatalf("after update %d: %d states, T %v", i+1, len(sl.States), sl.Params.T)
		}
	}
	st, err := sl.Read(be, 4)
	if err != nil || len(st) != 2 || st[0][0] == 0 {
		t.Fatalf("states %v, %v", st, err)
	}
	// Another optimizer: its own states replace Adam's.
	sl.T++
	if err := sl.Step(be, spec(t, `{"name":"sgd","momentum":0.9}`), "0", 4, sl.T, w, g); err != nil {
		t.Fatal(err)
	}
	if len(sl.States) != 1 {
		t.Fatalf("sgd with momentum kept %d states", len(sl.States))
	}
	sl.Reset(be)
	if sl.T != 0 || len(sl.States) != 0 {
		t.Fatalf("after Reset: T %d, %d states", sl.T, len(sl.States))
	}
}

// failAfter is a CPU backend whose Alloc fails after ok calls.
type failAfter struct {
	*compute.CPU
	ok int
}

func (f *failAfter) Alloc(n int) (compute.Buffer, error) {
	if f.ok == 0 {
		return nil, errors.New("out of device memory")
	}
	f.ok--
	return f.CPU.Alloc(n)
}

// Install is all or nothing: a wrong state count, a key given twice or a
// failed allocation leaves every slot as it was.
func TestInstall(t *testing.T) {
	t.Parallel()
	be := compute.NewCPU(nil)
	adam := spec(t, `{"name":"adam"}`)
	var a, b Slot
	w, _ := be.Alloc(2)
	g, _ := be.Alloc(2)
	a.T++
	if err := a.Step(be, adam, "a", 2, 1, w, g); err != nil {
		t.Fatal(err)
	}
	before := a.States[0]
	all := []*Slot{&a, &b}
	two := [][]float32{{1, 2}, {3, 4}}
	for _, c := range []struct {
		name string
		ls   []Load
		be   compute.Backend
		bad  bool // ErrBadStates
	}{
		{"one state for adam", []Load{{Slot: &b, Key: "b", Label: "b", N: 2, T: 1, States: two[:1]}}, be, true},
		{"short state", []Load{{Slot: &b, Key: "b", Label: "b", N: 2, T: 1, States: [][]float32{{1, 2}, {3}}}}, be, true},
		{"twice", []Load{{Slot: &b, Key: "b", Label: "b", N: 2, States: two}, {Slot: &b, Key: "b", Label: "b", N: 2, States: two}}, be, true},
		{"alloc", []Load{{Slot: &a, Key: "a", Label: "a", N: 2, States: two}, {Slot: &b, Key: "b", Label: "b", N: 2, States: two}}, &failAfter{CPU: be, ok: 3}, false},
	} {
		err := Install(c.be, adam, 5, c.ls, all)
		if err == nil || errors.Is(err, ErrBadStates) != c.bad {
			t.Fatalf("%s: err = %v", c.name, err)
		}
		if a.T != 1 || len(a.States) != 2 || a.States[0] != before || b.T != 0 || len(b.States) != 0 {
			t.Fatalf("%s: slots changed: a T %d, %d states; b T %d, %d states", c.name, a.T, len(a.States), b.T, len(b.States))
		}
	}
	// A good load replaces b's states and resets a (not in the load).
	if err := Install(be, adam, 5, []Load{{Slot: &b, Key: "b", Label: "b", N: 2, T: 4, States: two}}, all); err != nil {
		t.Fatal(err)
	}
	got, err := b.Read(be, 2)
	if err != nil || b.T != 4 || got[1][1] != 4 || a.T != 0 || len(a.States) != 0 {
		t.Fatalf("after install: b T %d states %v (%v); a T %d, %d states", b.T, got, err, a.T, len(a.States))
	}
}
