package engine

import (
	"container/heap"
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"unsafe"
)

func TestOpHeapOrder(t *testing.T) {
	t.Parallel()
	var h opHeap
	in := []struct{ prio, seq int }{{0, 1}, {5, 2}, {-3, 3}, {5, 4}, {0, 5}}
	for _, x := range in {
		heap.Push(&h, &Op{Prio: x.prio, seq: uint64(x.seq)})
	}
	var got []uint64
	for h.Len() > 0 {
		got = append(got, heap.Pop(&h).(*Op).seq)
	}
	want := []uint64{2, 4, 1, 5, 3}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("pop order %v, want %v", got, want)
		}
	}
}

// task records its id in a shared log when it runs; a gated task waits
// for its gate first, and a pending one leaves Finish to the test.
type task struct {
	op      Op
	id      int
	log     *[]int
	mu      *sync.Mutex
	gate    chan struct{}
	err     error
	pending bool
	done    chan struct{}
}

func (k *task) Run() (bool, error) {
	if k.gate != nil {
		<-k.gate
	}
	k.mu.Lock()
	*k.log = append(*k.log, k.id)
	k.mu.Unlock()
	return k.pending, k.err
}

func (k *task) Done() { close(k.done) }

type recorder struct {
	mu  sync.Mutex
	log []int
}

func (r *recorder) task(id int, vars ...*Var) *task {
	k := &task{id: id, log: &r.log, mu: &r.mu, done: make(chan struct{})}
	k.op.Task = k
	for _, v := range vars {
		k.op.Use(v, true)
	}
	return k
}

// Operations of two runners on one variable run in push order, each on
// its own runner, and both runners' WaitAll see their own.
func TestSharedVarOrdersRunners(t *testing.T) {
	t.Parallel()
	r1, r2 := NewRunner(), NewRunner()
	defer r1.Close()
	defer r2.Close()
	var shared, a, b Var
	var rec recorder
	gate := make(chan struct{})
	first := rec.task(1, &shared, &a)
	first.gate = gate
	r1.Push(&first.op)
	for i := 2; i <= 20; i++ {
		k := rec.task(i, &shared, &b)
		if i%2 == 1 {
			k.op.Use(&a, false)
		}
		if i%2 == 0 {
			r2.Push(&k.op)
		} else {
			r1.Push(&k.op)
		}
	}
	if shared.Idle() {
		t.Fatal("shared variable idle with 20 operations queued")
	}
	close(gate)
	if err := r1.WaitAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r2.WaitAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i, id := range rec.log {
		if id != i+1 {
			t.Fatalf("run order %v", rec.log)
		}
	}
	if !shared.Idle() || r1.Pending() != 0 || r2.Pending() != 0 {
		t.Fatal("work left after WaitAll")
	}
}

// An operation's error is kept on the variables it writes (until a later
// write succeeds) and on its runner (until WaitAll returns it).
func TestErrors(t *testing.T) {
	t.Parallel()
	r := NewRunner()
	defer r.Close()
	var v, ro Var
	var rec recorder
	boom := errors.New("boom")
	k := rec.task(1, &v)
	k.op.Use(&ro, false)
	k.err = boom
	r.Push(&k.op)
	if err := v.Wait(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("Wait on the written var: %v", err)
	}
	if err := ro.Wait(context.Background()); err != nil {
		t.Fatalf("Wait on the read var: %v", err)
	}
	if err := r.WaitAll(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("WaitAll: %v", err)
	}
	if err := r.WaitAll(context.Background()); err != nil {
		t.Fatalf("second WaitAll: %v", err)
	}
	v.ClearErr()
	if err := v.Wait(context.Background()); err != nil {
		t.Fatalf("after ClearErr: %v", err)
	}
}

// A pending operation holds its variables until Finish; waits give up
// when their context ends.
func TestPendingAndCancel(t *testing.T) {
	t.Parallel()
	r := NewRunner()
	defer r.Close()
	var v Var
	var rec recorder
	k := rec.task(1, &v)
	k.pending = true
	r.Push(&k.op)
	after := rec.task(2, &v)
	r.Push(&after.op)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 2)
	go func() { errc <- v.Wait(ctx) }()
	go func() { errc <- r.WaitAll(ctx) }()
	cancel()
	for range 2 {
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("wait after cancel: %v", err)
		}
	}
	k.op.Finish(nil)
	<-k.done
	<-after.done
	if err := r.WaitAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(rec.log) != 2 || rec.log[0] != 1 || rec.log[1] != 2 {
		t.Fatalf("run order %v", rec.log)
	}
}

// Many operations over overlapping variables from several goroutines and
// runners: no deadlock, and each variable's operations run in the order
// its FIFO was joined.
func TestNoDeadlock(t *testing.T) {
	t.Parallel()
	rs := []*Runner{smallBatches(NewRunner(), 2), smallBatches(NewRunner(), 5), NewRunner()}
	vars := make([]Var, 6)
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			var rec recorder
			for i := range 300 {
				k := rec.task(i, &vars[(g+i)%6], &vars[(g+2*i+1)%6], &vars[(i*7)%6])
				rs[(g+i)%3].Push(&k.op)
			}
		})
	}
	wg.Wait()
	for _, r := range rs {
		if err := r.WaitAll(context.Background()); err != nil {
			t.Fatal(err)
		}
		r.Close()
	}
	for i := range vars {
		if !vars[i].Idle() {
			t.Fatalf("var %d still busy", i)
		}
	}
}

// pooled is a task that goes back to its free list when done.
type pooled struct {
	op   Op
	free chan *pooled
}

func (p *pooled) Run() (bool, error) { return false, nil }
func (p *pooled) Done() {
	p.op.Reset()
	p.free <- p
}

// Push, run and finish allocate nothing once the caller's ops and the
// runner's queues are warm.
func TestNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	r := NewRunner()
	defer r.Close()
	var v, w Var
	free := make(chan *pooled, 1)
	free <- &pooled{free: free}
	round := func() {
		p := <-free // back once the previous round's op is done
		p.op.Task = p
		p.op.Use(&v, true)
		p.op.Use(&w, false)
		r.Push(&p.op)
	}
	for range 100 {
		round()
	}
	if a := testing.AllocsPerRun(200, round); a != 0 {
		t.Errorf("%v allocations per operation", a)
	}
	<-free
}

// An operation with many variables (a dist store's list call) merges its
// duplicates and orders its variables, and runs after the operations
// queued before on any of them.
func TestBigOp(t *testing.T) {
	r := NewRunner()
	defer r.Close()
	vars := make([]*Var, 200)
	for i := range vars {
		vars[i] = new(Var)
	}
	var rec recorder
	first := rec.task(1, vars[150])
	r.Push(&first.op)
	big := rec.task(2)
	for _, v := range vars {
		big.op.Use(v, false)
	}
	for _, v := range vars[:50] {
		big.op.Use(v, true) // duplicates: merged, the write wins
	}
	r.Push(&big.op)
	if len(big.op.vars) != len(vars) {
		t.Fatalf("%d variables after merging, want %d", len(big.op.vars), len(vars))
	}
	for i := 1; i < len(big.op.vars); i++ {
		if uintptr(unsafe.Pointer(big.op.vars[i-1])) >= uintptr(unsafe.Pointer(big.op.vars[i])) {
			t.Fatal("variables not in address order")
		}
	}
	writes := 0
	for _, w := range big.op.writes {
		if w {
			writes++
		}
	}
	if writes != 50 {
		t.Fatalf("%d written variables, want 50", writes)
	}
	<-first.done
	<-big.done
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.log) != 2 || rec.log[0] != 1 || rec.log[1] != 2 {
		t.Fatalf("ran %v, want [1 2]", rec.log)
	}
}

// TestSortMergeVars checks both ways a big operation's variables are
// sorted and merged (packed integers up to 2^16 variables, a map beyond)
// against a map: each variable once, ascending by address, writing if any
// of its entries writes. Seeded; the seed is printed.
func TestSortMergeVars(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	pool := make([]*Var, 3000)
	for i := range pool {
		pool[i] = new(Var)
	}
	for _, n := range []int{bigOp, 5000, 1<<16 + 1000} {
		o := &Op{}
		want := map[*Var]bool{}
		for range n {
			v, w := pool[r.IntN(len(pool))], r.IntN(4) == 0
			o.vars, o.writes = append(o.vars, v), append(o.writes, w)
			want[v] = want[v] || w
		}
		o.sortMergeVars()
		if len(o.vars) != len(want) || len(o.writes) != len(o.vars) {
			t.Fatalf("n %d: %d vars (%d writes) after merging, want %d", n, len(o.vars), len(o.writes), len(want))
		}
		for i, v := range o.vars {
			if i > 0 && uintptr(unsafe.Pointer(o.vars[i-1])) >= uintptr(unsafe.Pointer(v)) {
				t.Fatalf("n %d: not ascending at %d", n, i)
			}
			if o.writes[i] != want[v] {
				t.Fatalf("n %d: var %d writes %v, want %v", n, i, o.writes[i], want[v])
			}
		}
	}
}

// A Var is 32 bytes: two to a cache line, none across two (the size class
// of 32-byte objects keeps them aligned); a push and a finish touch its
// first two words only.
func TestVarLayout(t *testing.T) {
	if s := unsafe.Sizeof(Var{}); s != 32 {
		t.Fatalf("Var is %d bytes, want 32", s)
	}
	if o := unsafe.Offsetof(Var{}.second); o != 8 {
		t.Fatalf("Var.second at %d, want 8", o)
	}
}

// Idle reports whether no operation is queued on v (the tests' check that
// every FIFO drained).
func (v *Var) Idle() bool {
	if d := v.domain(); d != nil {
		d.mu.Lock()
		defer d.mu.Unlock()
	}
	return v.state>>stCountShift == 0
}

// flags returns v's flag bits (under its domain's mutex).
func (v *Var) flags() uint64 {
	if d := v.domain(); d != nil {
		d.mu.Lock()
		defer d.mu.Unlock()
	}
	return v.state & (stWaiters | stErr)
}

// smallBatches sets r to join and leave batch variables per hold of a
// domain's mutex, so that tests of a few dozen variables take the paths of
// a list call's thousands (several holds, the push lock, busy).
func smallBatches(r *Runner, batch int) *Runner {
	r.batch, r.between = batch, runtime.Gosched
	return r
}
