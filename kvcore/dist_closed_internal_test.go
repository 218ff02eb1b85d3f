package kvcore

import (
	"context"
	"errors"
	"testing"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/psm"
	"github.com/webkv/webkv/kvcore/psm/inproc"
)

// recSink records how a list call's items end.
type recSink struct {
	items  map[int]error
	groups int
}

func (s *recSink) itemDone(i int, err error) {
	if _, ok := s.items[i]; ok {
		panic("an item reported twice")
	}
	s.items[i] = err
}

func (s *recSink) groupDone(*listGroup, error) { s.groups++ }

// A list operation that runs after its remote closed (the store closing
// under a queued operation) fails each of its keys with ErrClosed, once,
// except those that failed before the network (the caller reports them),
// and sends nothing.
func TestListOnClosedRemote(t *testing.T) {
	s, r, keys := listRemote(t, 3)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, push := range []bool{true, false} {
		items := listItems(keys, push)
		items[1].dn = -1 // failed before the network
		sink := &recSink{items: map[int]error{}}
		var gs []listGroup
		r.list(push, !push, compute.Compression{}, items, sink, &gs)
		if len(sink.items) != 2 || sink.groups != 0 || len(gs) != 0 {
			t.Fatalf("push %v: items %v, %d groups reported, %d groups built; want items 0 and 2 only, nothing sent", push, sink.items, sink.groups, len(gs))
		}
		for _, i := range []int{0, 2} {
			if err, ok := sink.items[i]; !ok || !errors.Is(err, ErrClosed) {
				t.Fatalf("push %v: item %d ended with %v (reported %v), want ErrClosed", push, i, err, ok)
			}
		}
	}
}

// listRemote is a dist_sync store of one worker on an in-process server
// (closed with the test), its remote, and n int keys of 4 values each.
func listRemote(t *testing.T, n int) (*Store, *distRemote, []Key) {
	t.Helper()
	ctx := context.Background()
	srv := inproc.New(psm.Config{})
	t.Cleanup(srv.Close)
	s, err := Create(ctx, "dist_sync", &Options{Transport: srv.Connect("job", 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	keys := make([]Key, n)
	inits := make([]*Array, n)
	for i := range keys {
		keys[i] = IntKey(i)
		if inits[i], err = FromSlice(CPU(0), []float32{1, 2, 3, 4}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.InitList(ctx, keys, inits); err != nil {
		t.Fatal(err)
	}
	return s, s.rem.(*distRemote), keys
}

// listItems are a list call's items of keys (4 values each): pushes of
// 1, 2, 3, 4, or pulls into new outputs.
func listItems(keys []Key, push bool) []listItem {
	vals := []float32{1, 2, 3, 4}
	items := make([]listItem, len(keys))
	for i, k := range keys {
		items[i] = listItem{k: k, n: 4}
		if push {
			items[i].data, items[i].dn = &vals[0], 4
		} else {
			items[i].out = &make([]float32, 4)[0]
		}
	}
	return items
}
