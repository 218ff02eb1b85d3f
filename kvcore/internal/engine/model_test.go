package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestModel checks the engine against a reference on random work: several
// goroutines push operations (small ones with Push, big ones with TryPush
// falling back to Push, as a dist store does) over variables shared by two
// Runners; about half the operations finish asynchronously (Run returns
// pending and another goroutine calls Finish, as the dist path does), some
// with an error; the goroutines call Var.Wait, Var.Drain and
// Runner.WaitAll as they go. The reference checks that
//   - every operation ran once and was done once;
//   - no two operations held one variable at once (the per-variable logs
//     are plain slices: under -race the engine's hand-over must order them);
//   - each variable ran its operations in push order: a goroutine's in the
//     order it pushed them, and one pushed before another began in that
//     order; and one order of the pushes agrees with every variable's
//     (their union has no cycle);
//   - Wait, Drain and WaitAll return only once the operations pushed
//     before they began finished; Wait returns the error of the last write
//     once the work is done;
//
// and nothing deadlocks: every wait is bounded by a context deadline.
// Seeded; the seed is printed.
func TestModel(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	const nvars = 3 * bigOp
	goroutines, perG := 4, 400
	if testing.Short() {
		perG = 150
	}
	m := &model{
		rs:     []*Runner{smallBatches(NewRunner(), 3), smallBatches(NewRunner(), 7)},
		vars:   make([]Var, nvars),
		holder: make([]atomic.Int64, nvars),
		logs:   make([][]int, nvars),
		recs:   make([]rec, goroutines*perG),
		later:  make(chan *mop, goroutines*perG),
		perG:   perG,
	}
	for i := range m.recs {
		m.recs[i].id = i
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var finishers sync.WaitGroup
	for range 2 {
		finishers.Go(func() {
			for o := range m.later {
				m.leave(o)
				o.op.Finish(o.err)
			}
		})
	}
	var wg sync.WaitGroup
	for g := range goroutines {
		rng := rand.New(rand.NewPCG(seed, uint64(g)))
		wg.Go(func() { m.pushAll(ctx, t, rng, g, perG) })
	}
	wg.Wait()
	for _, r := range m.rs {
		err := r.WaitAll(ctx)
		if ctx.Err() != nil {
			for _, b := range m.bad {
				t.Error(b)
			}
			t.Fatalf("seed %d: deadlock: %d and %d operations left", seed, m.rs[0].Pending(), m.rs[1].Pending())
		}
		if err != nil && !m.isOpErr(err) {
			t.Errorf("WaitAll: %v", err)
		}
	}
	close(m.later)
	finishers.Wait()
	for _, r := range m.rs {
		r.Close()
	}
	m.check(t)
}

// model is TestModel's reference.
type model struct {
	rs     []*Runner
	vars   []Var
	holder []atomic.Int64 // 1 + id of the operation running on each variable
	logs   [][]int        // ids of the operations each variable ran, in order
	recs   []rec          // by id: goroutine g's i-th push is g*perG+i
	later  chan *mop      // pending operations, finished by other goroutines
	tick   atomic.Int64   // a clock for "before"
	mu     sync.Mutex
	bad    []string
	perG   int
}

// rec is what the reference knows about one push.
type rec struct {
	id          int
	runner      int
	vars        []int
	writes      []bool
	err         error
	start, end  atomic.Int64 // ticks: Push called, Push returned
	runs, dones atomic.Int32
	finished    atomic.Bool // left every variable (set just before Finish)
}

// mop is a pooled operation of the model.
type mop struct {
	op      Op
	m       *model
	r       *rec
	pending bool
	err     error
	free    chan *mop
}

func (o *mop) Run() (bool, error) {
	m, r := o.m, o.r
	if r.runs.Add(1) != 1 {
		m.fail("op %d ran twice", r.id)
	}
	for _, j := range r.vars {
		if !m.holder[j].CompareAndSwap(0, int64(r.id)+1) {
			m.fail("op %d runs on var %d held by op %d", r.id, j, m.holder[j].Load()-1)
		}
		m.logs[j] = append(m.logs[j], r.id)
	}
	if o.pending {
		m.later <- o
		return true, nil
	}
	m.leave(o)
	return false, o.err
}

func (o *mop) Done() {
	if o.r.dones.Add(1) != 1 {
		o.m.fail("op %d done twice", o.r.id)
	}
	o.op.Reset()
	o.r = nil
	select {
	case o.free <- o:
	default:
	}
}

// leave releases o's variables in the reference, just before Finish.
func (m *model) leave(o *mop) {
	r := o.r
	for _, j := range r.vars {
		if !m.holder[j].CompareAndSwap(int64(r.id)+1, 0) {
			m.fail("op %d leaves var %d held by op %d", r.id, j, m.holder[j].Load()-1)
		}
	}
	r.finished.Store(true)
}

func (m *model) fail(format string, args ...any) {
	m.mu.Lock()
	if len(m.bad) < 20 {
		m.bad = append(m.bad, fmt.Sprintf(format, args...))
	}
	m.mu.Unlock()
}

func (m *model) isOpErr(err error) bool {
	var e opErr
	return errors.As(err, &e)
}

type opErr int

func (e opErr) Error() string { return fmt.Sprintf("op %d failed", int(e)) }

// pushAll is goroutine g's work: perG pushes, with waits among them.
func (m *model) pushAll(ctx context.Context, t *testing.T, rng *rand.Rand, g, perG int) {
	free := make(chan *mop, 8)
	for i := range perG {
		r := &m.recs[g*perG+i]
		r.runner = rng.IntN(2)
		n := 1 + rng.IntN(5)
		big := rng.IntN(8) == 0
		if big {
			n = bigOp + rng.IntN(bigOp)
		}
		pool := len(m.vars)
		if !big && rng.IntN(4) != 0 {
			pool = 12 // mostly a few hot variables: pushes contend
		}
		for _, j := range rng.Perm(pool)[:n] {
			r.vars = append(r.vars, j)
			r.writes = append(r.writes, rng.IntN(2) == 0)
		}
		if rng.IntN(10) == 0 {
			r.err = opErr(r.id)
		}
		var o *mop
		select {
		case o = <-free:
		default:
			o = &mop{m: m, free: free}
		}
		o.r, o.pending, o.err = r, rng.IntN(2) == 0, r.err
		o.op.Task, o.op.Prio = o, rng.IntN(3)
		run := m.rs[r.runner]
		r.start.Store(m.tick.Add(1))
		if big {
			for k, j := range r.vars {
				o.op.Add(&m.vars[j], r.writes[k])
			}
			if !run.TryPush(&o.op) {
				run.Push(&o.op)
			}
		} else {
			for k, j := range r.vars {
				o.op.Use(&m.vars[j], r.writes[k])
			}
			run.Push(&o.op)
		}
		r.end.Store(m.tick.Add(1))
		switch rng.IntN(20) {
		case 0, 1:
			j := r.vars[rng.IntN(len(r.vars))]
			start := m.tick.Add(1)
			var err error
			if rng.IntN(2) == 0 {
				err = m.vars[j].Wait(ctx)
			} else {
				err = m.vars[j].Drain(ctx)
			}
			if ctx.Err() != nil {
				m.fail("deadlock: Wait on var %d after op %d", j, r.id)
				return
			}
			if err != nil && !m.isOpErr(err) {
				m.fail("Wait on var %d: %v", j, err)
			}
			m.checkDone(start, func(x *rec) bool { return slicesContains(x.vars, j) }, fmt.Sprintf("Wait on var %d", j))
		case 2:
			k := rng.IntN(2)
			start := m.tick.Add(1)
			err := m.rs[k].WaitAll(ctx)
			if ctx.Err() != nil {
				m.fail("deadlock: WaitAll after op %d", r.id)
				return
			}
			if err != nil && !m.isOpErr(err) {
				m.fail("WaitAll: %v", err)
			}
			m.checkDone(start, func(x *rec) bool { return x.runner == k }, fmt.Sprintf("WaitAll of runner %d", k))
		}
	}
}

func slicesContains(s []int, x int) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

// checkDone checks that every operation that match selects and whose Push
// returned before tick start finished.
func (m *model) checkDone(start int64, match func(*rec) bool, what string) {
	for i := range m.recs {
		x := &m.recs[i]
		if e := x.end.Load(); e != 0 && e < start && match(x) && !x.finished.Load() {
			m.fail("%s returned before op %d finished", what, x.id)
		}
	}
}

// check compares the logs with the pushes once all is done.
func (m *model) check(t *testing.T) {
	t.Helper()
	for _, b := range m.bad {
		t.Error(b)
	}
	for i := range m.recs {
		x := &m.recs[i]
		if x.runs.Load() != 1 || x.dones.Load() != 1 {
			t.Errorf("op %d ran %d times, done %d times", x.id, x.runs.Load(), x.dones.Load())
		}
	}
	// Each variable ran exactly the operations that use it, in push order.
	perG := m.perG
	uses := make([]int, len(m.vars))
	for i := range m.recs {
		for _, j := range m.recs[i].vars {
			uses[j]++
		}
	}
	succ := make([][]int, len(m.recs)) // the union of the variables' orders
	indeg := make([]int, len(m.recs))
	for j, log := range m.logs {
		if len(log) != uses[j] {
			t.Errorf("var %d ran %d operations, %d use it", j, len(log), uses[j])
		}
		last := map[int]int{} // goroutine -> last id seen
		for k, id := range log {
			g := id / perG
			if p, ok := last[g]; ok && p > id {
				t.Errorf("var %d ran op %d after op %d: goroutine %d pushed them the other way", j, id, p, g)
			}
			last[g] = id
			if k > 0 {
				succ[log[k-1]] = append(succ[log[k-1]], id)
				indeg[id]++
			}
		}
		// An operation pushed before another began runs first.
		minEnd := int64(1 << 62)
		minID := -1
		for k := len(log) - 1; k >= 0; k-- {
			x := &m.recs[log[k]]
			if minEnd < x.start.Load() {
				t.Errorf("var %d ran op %d before op %d, pushed after it returned", j, x.id, minID)
			}
			if e := x.end.Load(); e < minEnd {
				minEnd, minID = e, x.id
			}
		}
		// Wait returns the last write's error.
		var want error
		for _, id := range log {
			x := &m.recs[id]
			for k, v := range x.vars {
				if v == j && x.writes[k] {
					want = x.err
				}
			}
		}
		if err := m.vars[j].Wait(context.Background()); err != want {
			t.Errorf("var %d: Wait returned %v, want %v", j, err, want)
		}
		if !m.vars[j].Idle() {
			t.Errorf("var %d busy at the end", j)
		}
	}
	// One order of the pushes agrees with every variable's: no cycle.
	var ready []int
	for id, d := range indeg {
		if d == 0 {
			ready = append(ready, id)
		}
	}
	seen := 0
	for len(ready) > 0 {
		id := ready[len(ready)-1]
		ready = ready[:len(ready)-1]
		seen++
		for _, s := range succ[id] {
			if indeg[s]--; indeg[s] == 0 {
				ready = append(ready, s)
			}
		}
	}
	if seen != len(m.recs) {
		t.Errorf("the variables' orders form a cycle (%d of %d operations ordered)", seen, len(m.recs))
	}
}
