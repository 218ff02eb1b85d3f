package engine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

// TryPush refuses an operation that names a variable twice or one of
// another runner's domain, leaving every variable as it was; otherwise it
// queues the operation behind the ones before it on its variables, in
// the order given (no sort).
func TestTryPush(t *testing.T) {
	for _, batch := range []int{joinBatch, 4} {
		t.Run(fmt.Sprint(batch), func(t *testing.T) { testTryPush(t, batch) })
	}
}

func testTryPush(t *testing.T, batch int) {
	r := smallBatches(NewRunner(), batch)
	defer r.Close()
	vars := make([]*Var, 3*bigOp)
	for i := range vars {
		vars[i] = new(Var)
	}
	var rec recorder
	gate := make(chan struct{})
	first := rec.task(1, vars[len(vars)-1])
	first.gate = gate
	r.Push(&first.op)

	twice := rec.task(2)
	for _, v := range vars {
		twice.op.Add(v, false)
	}
	twice.op.Add(vars[7], true)
	if r.TryPush(&twice.op) {
		t.Fatal("TryPush queued an operation naming a variable twice")
	}
	for i, v := range vars[:len(vars)-1] {
		if !v.Idle() || v.flags() != 0 {
			t.Fatalf("variable %d joined by a refused operation", i)
		}
	}

	big := rec.task(3)
	for i := len(vars) - 1; i >= 0; i-- { // descending: the order given is kept
		big.op.Add(vars[i], i%2 == 0)
	}
	// A variable another runner named first is of its domain.
	other := NewRunner()
	defer other.Close()
	foreign := new(Var)
	pre := rec.task(4, foreign)
	other.Push(&pre.op)
	<-pre.done
	big.op.Add(foreign, true)
	if r.TryPush(&big.op) {
		t.Fatal("TryPush queued an operation with a variable of another domain")
	}
	for i, v := range vars[:len(vars)-1] {
		if !v.Idle() || v.flags() != 0 {
			t.Fatalf("variable %d joined by a refused operation", i)
		}
	}
	big.op.vars, big.op.writes = big.op.vars[:len(vars)], big.op.writes[:len(vars)]
	if !r.TryPush(&big.op) {
		t.Fatal("TryPush refused an operation with free, distinct variables")
	}
	if big.op.vars[0] != vars[len(vars)-1] {
		t.Fatal("TryPush reordered the variables")
	}
	close(gate)
	<-first.done
	<-big.done
	rec.mu.Lock()
	log := append([]int(nil), rec.log...)
	rec.mu.Unlock()
	if len(log) != 3 || log[0] != 4 || log[1] != 1 || log[2] != 3 {
		t.Fatalf("ran %v, want [4 1 3]", log)
	}
	// The same distinct variables again, push after push: each is taken
	// (a push's check for a variable named twice sees no earlier push's).
	for k := range 3 {
		again := rec.task(10 + k)
		for _, v := range vars {
			again.op.Add(v, k%2 == 0)
		}
		if !r.TryPush(&again.op) {
			t.Fatalf("TryPush refused push %d of the same distinct variables", k+2)
		}
		<-again.done
	}
	for i, v := range vars {
		if !v.Idle() || v.flags() != 0 {
			t.Fatalf("variable %d: flags %b after its operations finished", i, v.flags())
		}
	}
	// The refused operation can still be pushed: merged and sorted.
	r.Push(&twice.op)
	<-twice.done
}

// Big operations pushed with TryPush (falling back to Push, as the store
// does) and with Push, small ones among them, on shared variables from
// several goroutines and runners: none deadlocks, each variable's
// operations run one at a time in the order they joined it. Seeded; the
// seed is printed.
func TestBigOpsNoDeadlock(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rs := []*Runner{smallBatches(NewRunner(), 5), smallBatches(NewRunner(), 11)}
	vars := make([]Var, 4*bigOp)
	inUse := make([]int32, len(vars)) // operations running on each variable
	var mu sync.Mutex
	bad := 0
	var wg sync.WaitGroup
	for g := range 4 {
		rng := rand.New(rand.NewPCG(seed, uint64(g)))
		wg.Go(func() {
			for i := range 100 {
				k := &checker{inUse: inUse, mu: &mu, bad: &bad, done: make(chan struct{})}
				k.op.Task = k
				n := 1 + rng.IntN(2*bigOp)
				for _, j := range rng.Perm(len(vars))[:n] {
					k.idx = append(k.idx, j)
					k.op.Add(&vars[j], rng.IntN(2) == 0)
				}
				r := rs[(g+i)%2]
				if i%3 == 0 || !r.TryPush(&k.op) {
					r.Push(&k.op)
				}
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
	if bad > 0 {
		t.Fatalf("%d times two operations ran on one variable at once", bad)
	}
	for i := range vars {
		if !vars[i].Idle() {
			t.Fatalf("var %d still busy", i)
		}
	}
}

// checker counts, per variable, the operations running on it.
type checker struct {
	op    Op
	idx   []int
	inUse []int32
	mu    *sync.Mutex
	bad   *int
	done  chan struct{}
}

func (k *checker) Run() (bool, error) {
	k.mu.Lock()
	for _, j := range k.idx {
		k.inUse[j]++
		if k.inUse[j] > 1 {
			*k.bad++
		}
	}
	k.mu.Unlock()
	k.mu.Lock()
	for _, j := range k.idx {
		k.inUse[j]--
	}
	k.mu.Unlock()
	return false, nil
}

func (k *checker) Done() { close(k.done) }

// A push's tag is never 0, the tag of a variable no push joined yet, over
// a whole cycle of tags: a list of fresh variables is never taken for one
// that names a variable twice.
func TestPushTagNeverZero(t *testing.T) {
	d := new(domain)
	d.mu.Lock()
	defer d.mu.Unlock()
	seen := make(map[uint64]bool)
	for range 1 << stTagBits {
		tag := d.nextTag()
		if tag == 0 || tag&^stTag != 0 {
			t.Fatalf("tag %#x: want a nonzero value in stTag's bits", tag)
		}
		seen[tag] = true
	}
	if len(seen) != 1<<stTagBits-1 {
		t.Fatalf("%d tags in a cycle, want %d", len(seen), 1<<stTagBits-1)
	}
}
