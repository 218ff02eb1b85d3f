package kvcore

import (
	"container/heap"
	"runtime"
	"sync"
	"testing"
)

func TestOpHeapOrder(t *testing.T) {
	var h opHeap
	in := []struct{ prio, seq int }{{0, 1}, {5, 2}, {-3, 3}, {5, 4}, {0, 5}}
	for _, x := range in {
		heap.Push(&h, &op{prio: x.prio, seq: uint64(x.seq)})
	}
	var got []uint64
	for h.Len() > 0 {
		got = append(got, heap.Pop(&h).(*op).seq)
	}
	want := []uint64{2, 4, 1, 5, 3}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("pop order %v, want %v", got, want)
		}
	}
}

// With every engine worker busy, queued pushes to other keys start in
// priority order once workers free up.
func TestPriorityAcrossKeys(t *testing.T) {
	s := newLocal(t)
	workers := max(2, runtime.GOMAXPROCS(0))
	release := make(chan struct{})
	started := make(chan struct{}, 64)
	var mu sync.Mutex
	var order []int
	s.SetUpdater(func(k Key, _, _ *Array) error {
		if k.Int() < 100 {
			started <- struct{}{}
			<-release
			return nil
		}
		mu.Lock()
		order = append(order, k.Int())
		mu.Unlock()
		return nil
	})
	for k := range workers {
		s.Init(bg, IntKey(k), full(t, 0, 4))
	}
	prios := map[int]int{100: 0, 101: 9, 102: -9, 103: 3, 104: -1}
	for k := range prios {
		s.Init(bg, IntKey(k), full(t, 0, 4))
	}
	for k := range workers {
		s.Push(IntKey(k), full(t, 1, 4))
	}
	for range workers {
		<-started // every worker is now blocked
	}
	for _, k := range []int{100, 101, 102, 103, 104} {
		s.PushList([]Key{IntKey(k)}, [][]*Array{{full(t, 1, 4)}}, prios[k])
	}
	close(release)
	if err := s.WaitAll(bg); err != nil {
		t.Fatal(err)
	}
	// Workers pick in priority order; two may run at once, so only check that
	// each key ran after every key two or more places above it.
	pos := map[int]int{}
	for i, k := range order {
		pos[k] = i
	}
	byPrio := []int{101, 103, 100, 104, 102}
	for i := range byPrio {
		for j := i + workers; j < len(byPrio); j++ {
			if pos[byPrio[j]] < pos[byPrio[i]] {
				t.Fatalf("order %v: key %d (prio %d) ran before key %d (prio %d)", order, byPrio[j], prios[byPrio[j]], byPrio[i], prios[byPrio[i]])
			}
		}
	}
	t.Logf("run order %v", order)
}
