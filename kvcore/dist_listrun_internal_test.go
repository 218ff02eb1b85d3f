package kvcore

import (
	"context"
	"slices"
	"testing"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/psm"
	"github.com/webkv/webkv/kvcore/psm/inproc"
)

// chanSink hears a list call's ends on channels (its answers come on the
// remote's goroutines).
type chanSink struct {
	items  chan int
	groups chan *listGroup
}

func (s *chanSink) itemDone(i int, err error)         { s.items <- i }
func (s *chanSink) groupDone(g *listGroup, err error) { s.groups <- g }

// A key of a list call that failed before the network (dn -1) stays out
// of the group its neighbours join (list's loop for the keys of one group,
// listRun, skips it as list does), and is not reported by list, for push
// and for pull lists alike.
func TestListRunSkipsFailedItems(t *testing.T) {
	ctx := context.Background()
	srv := inproc.New(psm.Config{})
	defer srv.Close()
	s, err := Create(ctx, "dist_sync", &Options{Transport: srv.Connect("job", 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := s.rem.(*distRemote)
	keys := []Key{IntKey(0), IntKey(1), IntKey(2), IntKey(3)}
	inits := make([]*Array, len(keys))
	for i := range inits {
		if inits[i], err = FromSlice(CPU(0), []float32{1, 2, 3, 4}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.InitList(ctx, keys, inits); err != nil {
		t.Fatal(err)
	}
	vals := []float32{1, 2, 3, 4}
	for _, push := range []bool{true, false} {
		items := make([]listItem, len(keys))
		for i, k := range keys {
			items[i] = listItem{k: k, n: 4}
			if push {
				items[i].data, items[i].dn = &vals[0], 4
			} else {
				items[i].out = &make([]float32, 4)[0]
			}
		}
		items[2].dn = -1 // failed before the network
		sink := &chanSink{items: make(chan int, len(items)), groups: make(chan *listGroup, 1)}
		var gs []listGroup
		r.list(push, false, compute.Compression{}, items, sink, &gs)
		g := <-sink.groups
		if want := []int32{0, 1, 3}; !slices.Equal(g.idx, want) || len(gs) != 1 || g.elems != 12 {
			t.Fatalf("push %v: %d groups, the first of items %v (%d values), want one of %v (12 values)", push, len(gs), g.idx, g.elems, want)
		}
		select {
		case i := <-sink.items:
			t.Fatalf("push %v: item %d reported on its own, want none", push, i)
		default:
		}
	}
}
