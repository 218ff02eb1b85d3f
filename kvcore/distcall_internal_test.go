package kvcore

import (
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/webkv/webkv/kvcore/internal/engine"
)

// A list call's operation that was built but never queued (a later chunk
// had a bad key) goes back to the pool without pointing into the caller's
// outputs: a pull list's items are otherwise cleared only as its keys
// finish, which never happens for it.
func TestUnqueuedListForgetsOutputs(t *testing.T) {
	out, err := NewArray(CPU(0), 4)
	if err != nil {
		t.Fatal(err)
	}
	s := &Store{}
	l := s.newDistList(1, false, true, 0)
	l.items = append(l.items, listItem{k: IntKey(1), n: 4, out: &out.hostOut(4)[0]})
	items := l.items
	c := distCallPool.Get().(*distCall)
	c.lists = append(c.lists[:0], l)
	c.put()
	if it := items[0]; it.out != nil || it.n != 0 {
		t.Fatalf("an unqueued pull list kept its item %+v", it)
	}
}

// A pooled list sized for a short chunk (a call's last) is sized again
// for a longer one, not grown by appends.
func TestPooledListResized(t *testing.T) {
	s := &Store{}
	l := s.newDistList(3, true, false, 0)
	l.Done()
	l = s.newDistList(distListChunk, true, false, 0)
	defer l.Done()
	if cap(l.es) < distListChunk || cap(l.items) < distListChunk || cap(l.arrs) < 2*distListChunk {
		t.Fatalf("list for %d keys: capacities es %d, items %d, arrs %d", distListChunk, cap(l.es), cap(l.items), cap(l.arrs))
	}
}

// buildRun (a list call's common keys in a loop of their own) builds for
// every key it takes exactly what the general way (fits, then add) builds
// for it (2-d keys among them): the items, entries, arrays and their
// bounds, the engine variables and whether each is written, the count of
// ready items, the call's entries and the repeat bits; and it stops at
// the first key that is not the common case (a key of two arrays, an
// array of another shape, a key seen before, a key outside the dense
// table, an array without host memory), which the general way then
// takes.
func TestBuildRunAsAdd(t *testing.T) {
	const n = 40
	for _, push := range []bool{true, false} {
		for _, stop := range []string{"none", "2-d", "two arrays", "shape", "repeat", "not dense", "no host"} {
			s := &Store{}
			keys := make([]Key, n)
			arrs := make([][]*Array, n)
			for i := range keys {
				shape := []int{3}
				if (stop == "2-d" || stop == "shape") && i%5 == 2 {
					shape = []int{1, 3}
				}
				a, err := NewArray(CPU(0), shape...)
				if err != nil {
					t.Fatal(err)
				}
				s.be = a.be
				eshape := shape
				if stop == "shape" && i == 17 {
					eshape = []int{3, 1} // the key's shape; the array's is 1x3
				}
				e := &entry{key: IntKey(i), id: i, shape: eshape, n: 3, v: new(engine.Var)}
				keys[i], arrs[i] = e.key, []*Array{a}
				s.dense = append(s.dense, hotOf(e))
			}
			want := n
			switch stop {
			case "two arrays":
				arrs[17] = append(arrs[17], arrs[16][0])
				want = 17
			case "shape":
				want = 17
			case "repeat":
				keys[17] = keys[3]
				want = 17
			case "not dense":
				keys[17] = IntKey(n + 5)
				want = 17
			case "no host":
				a := *arrs[17][0]
				a.host = nil
				arrs[17] = []*Array{&a}
				want = 17
			}
			lim := 4*n + 1024
			var values, outs [][]*Array
			if push {
				values = arrs
			} else {
				outs = arrs
			}
			run := func(fast bool) (*distList, *distCall, []uint64, int) {
				c := &distCall{entries: make([]*entry, n)}
				bits := make([]uint64, (lim+63)/64)
				l := s.newDistList(n, push, !push, 0)
				if fast {
					return l, c, bits, s.buildRun(c, l, bits, lim, keys, arrs, push, 0, n)
				}
				// The general way for the keys buildRun takes.
				for i := range want {
					h := &s.dense[keys[i].i]
					if !fits(h, arrs[i]) {
						t.Fatalf("%s: key %d does not fit", stop, i)
					}
					c.entries[i] = h.e
					bits[h.id/64] |= 1 << (h.id % 64)
					l.add(h, &keys[i], firstOf(values, i), firstOf(outs, i))
				}
				return l, c, bits, want
			}
			l1, c1, b1, got := run(true)
			l2, c2, b2, _ := run(false)
			name := fmt.Sprintf("push %v, stop at %s", push, stop)
			if got != want {
				t.Fatalf("%s: buildRun took %d keys, want %d", name, got, want)
			}
			// The same objects, not only equal ones (DeepEqual follows
			// pointers): the variables and arrays by address.
			if !reflect.DeepEqual(l1, l2) || !slices.Equal(c1.entries, c2.entries) || !slices.Equal(b1, b2) ||
				!slices.Equal(l1.es, l2.es) || !slices.Equal(l1.arrs, l2.arrs) || !slices.Equal(l1.items, l2.items) ||
				!slices.Equal(opVars(&l1.eng), opVars(&l2.eng)) {
				t.Fatalf("%s: buildRun built\n%+v\nthe general way\n%+v", name, l1, l2)
			}
			l1.Done()
			l2.Done()
		}
	}
}

// firstOf is as[i] (nil when as is).
func firstOf(as [][]*Array, i int) []*Array {
	if as == nil {
		return nil
	}
	return as[i]
}

// opVars is the addresses of o's variables, in order (engine.Op keeps
// them unexported).
func opVars(o *engine.Op) []uintptr {
	vs := reflect.ValueOf(o).Elem().FieldByName("vars")
	addrs := make([]uintptr, vs.Len())
	for i := range addrs {
		addrs[i] = vs.Index(i).Pointer()
	}
	return addrs
}
