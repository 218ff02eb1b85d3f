package kvcore

import (
	"slices"
	"testing"

	"github.com/webkv/webkv/kvcore/compute"
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
	_, r, keys := listRemote(t, 4)
	for _, push := range []bool{true, false} {
		items := listItems(keys, push)
		items[2].dn = -1 // failed before the network
		sink := &chanSink{items: make(chan int, len(items)), groups: make(chan *listGroup, 1)}
		var gs []listGroup
		r.list(push, !push, compute.Compression{}, items, sink, &gs)
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
