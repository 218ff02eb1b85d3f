package engine

import (
	"context"
	"runtime"
	"testing"
)

// BenchmarkManyVars is the engine's part of a dist store's list calls of
// many small keys (relay BenchmarkManyKeys): per round, a push list (one
// operation per 4,096 keys naming each key's variable, written, and its
// input array's, read) that stays in flight (its Run returns pending)
// while a pull list (each key's variable, read, and its output array's,
// written) queues behind it; then the push list's answers finish it,
// which hands the keys over to the pull list, whose answers finish it in
// turn. It reports ns per variable use (a join and a leave).
func BenchmarkManyVars(b *testing.B) {
	const keys, chunk = 100_000, 4096
	keyVars, ins, outs := make([]Var, keys), make([]*Var, keys), make([]*Var, keys)
	for i := range ins {
		ins[i], outs[i] = new(Var), new(Var)
	}
	r := NewRunner()
	defer r.Close()
	nops := (keys + chunk - 1) / chunk
	ops := make([]benchOp, 2*nops)
	for i := range ops {
		ops[i].op.Task = &ops[i]
		ops[i].ran = make(chan *benchOp, 1)
	}
	round := func() {
		for pull := range 2 {
			for c := range nops {
				o := &ops[pull*nops+c]
				o.op.Task = o
				for k := c * chunk; k < min(keys, (c+1)*chunk); k++ {
					if pull == 0 {
						o.op.Add(&keyVars[k], true)
						o.op.Add(ins[k], false)
					} else {
						o.op.Add(&keyVars[k], false)
						o.op.Add(outs[k], true)
					}
				}
				if !r.TryPush(&o.op) {
					r.Push(&o.op)
				}
			}
		}
		// The answers: each operation finishes once it ran.
		for i := range ops {
			o := <-ops[i].ran
			o.op.Finish(nil)
		}
		if err := r.WaitAll(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	round()
	runtime.GC() // the set-up's garbage is not collected in the timed rounds
	b.ResetTimer()
	for range b.N {
		round()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(4*keys), "ns/var_use")
}

// benchOp is an operation that runs pending and is finished by the
// benchmark's loop.
type benchOp struct {
	op  Op
	ran chan *benchOp
}

func (o *benchOp) Run() (bool, error) {
	o.ran <- o
	return true, nil
}

func (o *benchOp) Done() { o.op.Reset() }
