package psm

import (
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/optimizer"
	"github.com/webkv/webkv/kvcore/wire"
)

// Budgets: what one job may hold, so that no peer (a token holder
// included) can make a server allocate without bound. See the package
// doc's "Budgets" section for what is counted and why.

// Defaults of the budget fields of Config.
const (
	DefaultMaxElems      = 1 << 26   // elements of one key part: 256 MiB of float32
	DefaultMaxBytes      = 1 << 30   // values, merge buffers, optimizer states and held inits of one job
	DefaultMaxReplyBytes = 256 << 10 // one worker's answer cache
	DefaultMaxKeyName    = 1 << 10   // bytes of a string key's name
)

// maxErrorText is the longest error text sent (wire.AppendError's cut);
// maxCachedText the longest kept in a worker's answer cache (a retried
// request gets the cut text).
const (
	maxErrorText  = 1024
	maxCachedText = 256
	// replyCost is what an answer-cache entry costs besides its text: the
	// reply struct, its map slot and its place in the eviction order.
	replyCost = 96
)

// Budget is a byte budget shared by several Jobs: a server's memory for
// the values and optimizer states of all its jobs. A Job reserves from it
// (and from its own Config.MaxBytes) before it allocates a key, states or
// a held init, and returns what it frees. Safe for concurrent use by Jobs
// on different goroutines.
type Budget struct {
	max  int64
	used atomic.Int64
}

// NewBudget returns a budget of max bytes (max <= 0: unlimited).
func NewBudget(max int64) *Budget { return &Budget{max: max} }

// Used is the number of bytes reserved now.
func (b *Budget) Used() int64 { return b.used.Load() }

// Max is the budget's size (0: unlimited).
func (b *Budget) Max() int64 { return max(b.max, 0) }

func (b *Budget) reserve(n int64, force bool) bool {
	for {
		u := b.used.Load()
		if !force && b.max > 0 && n > 0 && u+n > b.max {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

// reserve takes n bytes from the job's budget and the shared one; false
// (nothing taken) if either is exhausted. force takes them regardless
// (a restore: the data exists already).
func (j *Job) reserve(n int64, force bool) bool {
	if n <= 0 {
		j.release(-n)
		return true
	}
	if !force && j.used+n > j.cfg.MaxBytes {
		return false
	}
	if b := j.cfg.Budget; b != nil && !b.reserve(n, force) {
		return false
	}
	j.used += n
	return true
}

func (j *Job) release(n int64) {
	if n <= 0 {
		return
	}
	j.used -= n
	if b := j.cfg.Budget; b != nil {
		b.reserve(-n, true)
	}
}

// errBudget explains a refused reservation of n bytes for what.
func (j *Job) errBudget(what string, n int64) *wire.Error {
	if j.used+n > j.cfg.MaxBytes {
		return wire.Errorf(wire.CodeLimit, "job %s: %s needs %d more bytes; the job holds %d of its %d-byte budget for values and optimizer states",
			short(j.cfg.Job), what, n, j.used, j.cfg.MaxBytes)
	}
	return wire.Errorf(wire.CodeLimit, "job %s: %s needs %d more bytes; the server's budget for the values and states of all jobs (%d bytes) is exhausted",
		short(j.cfg.Job), what, n, j.cfg.Budget.Max())
}

// numStates is the number of optimizer state arrays opt keeps for k (0
// without an optimizer).
func numStates(opt *optimizer.Spec, k *key) int {
	if opt == nil {
		return 0
	}
	var p compute.StepParams
	opt.Params(k.optName(), 1, 1, &p)
	return opt.Kind().NumStates(&p)
}

// keyBytes is what a key part of n elements holds under opt with states
// state arrays: its value, the merge buffer an optimizer's rounds use, and
// the states.
func keyBytes(n int, opt *optimizer.Spec, states int) int64 {
	arrays := 1 + states
	if opt != nil {
		arrays++ // merge buffer
	}
	return 4 * int64(n) * int64(arrays)
}

// rebudget changes k's reservation to need bytes; false if it cannot grow.
func (j *Job) rebudget(k *key, need int64) bool {
	if !j.reserve(need-k.resv, false) {
		return false
	}
	k.resv = need
	return true
}

// short quotes s for an error text, cut to 64 bytes: error texts and the
// answer cache never echo a peer's big inputs.
func short(s string) string {
	const n = 64
	if len(s) <= n {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:n]) + fmt.Sprintf("...(%d bytes)", len(s))
}

// cutText cuts an error text to at most n bytes.
func cutText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// ---- the answer cache, bounded in bytes ----

func (r *reply) cost() int { return replyCost + len(r.msg) }

// remember caches r as the answer to w's request seq. The cache is
// bounded by Config.MaxReplyBytes (and maxAnswers entries): the oldest
// answers go first. A worker retries only requests it has no answer to,
// which are its newest, so evicting the oldest costs exactly-once only
// for a client that keeps far more than its window unacknowledged.
func (j *Job) remember(w *worker, seq uint64, r reply) {
	if r.req != wire.TypePushList { // a list's answer table is kept whole (list.go)
		r.msg = cutText(r.msg, maxCachedText)
	}
	if w.done == nil {
		w.done = map[uint64]reply{}
	}
	if old, ok := w.done[seq]; ok {
		w.doneBytes -= old.cost()
	} else {
		w.order = append(w.order, seq)
	}
	w.done[seq] = r
	w.doneBytes += r.cost()
	if seq > w.maxSeq {
		w.maxSeq = seq
	}
	for (w.doneBytes > j.cfg.MaxReplyBytes || len(w.done) > maxAnswers) && len(w.order) > 0 {
		s := w.order[0]
		w.order = w.order[1:]
		if old, ok := w.done[s]; ok {
			delete(w.done, s)
			w.doneBytes -= old.cost()
		}
	}
	w.compactOrder()
}

// forget drops w's cached answer to seq.
func (w *worker) forget(seq uint64) {
	if old, ok := w.done[seq]; ok {
		delete(w.done, seq)
		w.doneBytes -= old.cost()
	}
}

// compactOrder drops the eviction order's entries of answers forgotten
// otherwise (acknowledged), once they outnumber the live ones.
func (w *worker) compactOrder() {
	if len(w.order) <= 2*len(w.done)+64 {
		return
	}
	out := w.order[:0]
	for _, s := range w.order {
		if _, ok := w.done[s]; ok {
			out = append(out, s)
		}
	}
	w.order = out
}

// rebuildCache recomputes the eviction order (by seq) and the byte count
// of a restored worker's cache.
func (w *worker) rebuildCache() {
	w.order = sortedSeqs(w.done)
	w.doneBytes = 0
	for _, r := range w.done {
		w.doneBytes += r.cost()
	}
}

// budgetFor re-reserves every key's bytes for optimizer opt, with the
// state counts of st where it lists a key (a LoadStates) and opt's
// otherwise. On success the reservations are in place; on failure
// nothing changed.
func (j *Job) budgetFor(opt *optimizer.Spec, st *wire.States) *wire.Error {
	given := map[uint64]int{}
	if st != nil {
		for _, ks := range st.Keys {
			given[ks.Key] = len(ks.States)
		}
	}
	need := make(map[*key]int64, len(j.keys))
	var delta int64
	for _, k := range j.keys {
		ns, ok := given[k.id]
		if !ok {
			ns = numStates(opt, k)
		}
		need[k] = keyBytes(k.n, opt, ns)
		delta += need[k] - k.resv
	}
	if !j.reserve(delta, false) {
		what := "the optimizer's states"
		if st != nil {
			what = "the loaded optimizer states"
		}
		return j.errBudget(what, delta)
	}
	for k, n := range need {
		k.resv = n
	}
	return nil
}

// BudgetUsed is the number of bytes the job has reserved from its budget
// (values, merge buffers, optimizer states, held inits).
func (j *Job) BudgetUsed() int64 { return j.used }
