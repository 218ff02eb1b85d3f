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
	// Free one worker only: it runs the queued pushes one by one, so they
	// must run strictly by priority.
	release <- struct{}{}
	want := []int{101, 103, 100, 104, 102}
	for {
		mu.Lock()
		n := len(order)
		mu.Unlock()
		if n == len(want) {
			break
		}
		runtime.Gosched()
	}
	close(release)
	if err := s.WaitAll(bg); err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("run order %v, want %v", order, want)
		}
	}
}
