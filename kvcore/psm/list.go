package psm

import (
	"fmt"
	"slices"
	"strconv"
	"time"
	"unsafe"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/internal/kernels"
	"github.com/webkv/webkv/kvcore/wire"
)

// List requests (wire/list.go): many whole keys in one request. Per key,
// a list does what a single push or pull of that key would (the same
// rounds, late pushes, NaN refusals, optimizer steps, queueing for the
// next round), but the request has ONE seq: one answer-cache entry, one
// held entry, one answer. A pull list is answered at once with the
// values of all its keys (the worker sends it only after its pushes of
// those keys were answered, as for single pulls). A push list is answered
// once every key's push was settled (its round closed, or refused), with
// the per-key rounds and codes (wire.ListResult; no payload when all are
// the rounds the list named). A list with a bad key (unknown, mixed kind,
// split over shards, a wrong element count) is refused whole and changes
// nothing.

// listReq is a push list whose keys are not all settled yet.
type listReq struct {
	w    *worker
	seq  uint64
	left int
	rs   []wire.ListResult // Delta is minus the named round until settled
	text string            // the first refusal's text
}

type listState struct {
	runs   []wire.ListRun
	rounds []uint64
	ks     []*key
	free   []*listReq
	t      listTurn // listround.go
}

func (j *Job) newList(w *worker, seq uint64, n int) *listReq {
	var lr *listReq
	if l := len(j.ls.free); l > 0 {
		lr = j.ls.free[l-1]
		j.ls.free = j.ls.free[:l-1]
	} else {
		lr = new(listReq)
	}
	lr.w, lr.seq, lr.left, lr.text = w, seq, n, ""
	if cap(lr.rs) < n {
		lr.rs = make([]wire.ListResult, n)
	}
	lr.rs = lr.rs[:n]
	return lr
}

func idLabel(id uint64, str bool) string {
	if str {
		return fmt.Sprintf("#%016x", id)
	}
	return strconv.FormatInt(int64(id), 10)
}

// listKeys decodes and checks list m: its keys (reused slice), or nil
// after refusing the list; a push list's rounds are in j.ls.rounds, one
// per key. The table is runs of consecutive ids (wire.DecodeListRuns, which
// checked that they do not wrap and that they hold m.Count keys), so a
// run's keys are one slice of byID, read in order with one bounds check
// for the run; a key not found there is looked up and checked on its own.
func (j *Job) listKeys(w *worker, m *wire.Msg) []*key {
	runs, _, err := wire.DecodeListRuns(m, j.lim, j.ls.runs[:0])
	j.ls.runs = runs
	if err != nil {
		j.badMessage(w.conn, m.Seq, err.(*wire.Error))
		return nil
	}
	str, push := m.Flags&wire.FlagStrKey != 0, m.Type == wire.TypePushList
	n := int(m.Count)
	ks := slices.Grow(j.ls.ks[:0], n)[:n]
	j.ls.ks = ks
	if push {
		j.ls.rounds = slices.Grow(j.ls.rounds[:0], n)[:n]
	}
	total := 0
	byID := j.byID
	i := 0 // the entry (key) index of the list
	for _, run := range runs {
		id, end := run.First, run.First+run.Count
		if push {
			rs := j.ls.rounds[i : i+int(run.Count)]
			for x := range rs {
				rs[x] = run.Round
			}
		}
		if id < uint64(len(byID)) {
			x, t := listRun(byID[id:min(end, uint64(len(byID)))], ks[i:], str)
			id, i, total = id+uint64(x), i+x, total+t
		}
		for ; id < end; id, i = id+1, i+1 {
			k := j.key(id)
			if k != nil && k.str == str && k.whole {
				total += k.n
				ks[i] = k
				continue
			}
			clear(ks)
			if k == nil {
				j.reject(w, m.Seq, wire.Errorf(wire.CodeUnknownKey, "%v entry %d: key %s was not initialized (call Init first)", m.Type, i, idLabel(id, str)))
				return nil
			}
			if k.str != str {
				j.reject(w, m.Seq, wire.Errorf(wire.CodeUnknownKey, "%v entry %d: key %s: int and string keys cannot be mixed", m.Type, i, idLabel(id, str)))
				return nil
			}
			j.reject(w, m.Seq, wire.Errorf(wire.CodeShape, "%v entry %d: key %s is split over shards (this one holds [%d, +%d) of %d): send it on its own", m.Type, i, k.label(), k.off, k.n, k.total))
			return nil
		}
	}
	if total != int(m.Total) {
		clear(ks)
		j.reject(w, m.Seq, wire.Errorf(wire.CodeShape, "%v of %d keys says %d elements, the keys hold %d", m.Type, n, m.Total, total))
		return nil
	}
	return ks
}

// listRun puts the keys of refs (a run of a list's keys in byID) into out
// while they are whole keys of kind str: the keys put and their elements.
// An entry of byID without a key is not whole (its zero value). Not
// inlined: as a function of its own, its loop keeps everything in
// registers.
//
//go:noinline
func listRun(refs []keyRef, out []*key, str bool) (n, total int) {
	out = out[:len(refs)]
	for x := range refs {
		r := &refs[x]
		if !r.whole || r.str != str {
			return x, total
		}
		total += int(r.n)
		out[x] = r.k
	}
	return len(refs), total
}

func (j *Job) pullList(w *worker, m *wire.Msg) {
	ks := j.listKeys(w, m)
	if ks == nil {
		return
	}
	// The values are appended into the room grown for all of them: p's
	// capacity is exact, so no append of a key reallocates.
	start := len(j.scratch)
	j.scratch = slices.Grow(j.scratch, 4*int(m.Total))
	p := j.scratch[start : start : start+4*int(m.Total)]
	for i, k := range ks {
		if kernels.HasPrefetch {
			prefetchAhead(ks, i, true)
		}
		vals, ok := cpuValue(k)
		if !ok {
			var err error
			if vals, err = j.hostValue(k); err != nil {
				j.reject(w, m.Seq, wire.Errorf(wire.CodeInternal, "key %s: reading the value: %v", k.label(), err))
				return
			}
		}
		p = wire.AppendFloat32s(p, vals)
	}
	j.scratch = j.scratch[:start+len(p)]
	clear(ks)
	j.stats.Lists++
	j.stats.Pulls += uint64(len(ks))
	j.stats.BytesOut += uint64(len(p))
	delete(w.held, m.Seq)
	j.send(w.conn, wire.Msg{Header: wire.Header{Type: wire.TypeAck, Flags: wire.FlagList, Seq: m.Seq,
		DType: wire.DTypeF32, Count: m.Total, Total: m.Total}, Payload: p})
}

func (j *Job) pushList(now time.Duration, w *worker, m *wire.Msg) {
	ks := j.listKeys(w, m)
	if ks == nil {
		return
	}
	if j.mode == wire.ModeAsync && j.opt == nil && j.cu == nil {
		j.reject(w, m.Seq, wire.Errorf(wire.CodeMode, "%v: dist_async needs an optimizer on the server: call SetOptimizer before pushing", m.Type))
		return
	}
	data := m.Data()
	j.stats.Lists++
	j.stats.Pushes += uint64(len(ks))
	j.stats.BytesIn += uint64(len(data))
	lr := j.newList(w, m.Seq, len(ks))
	rounds := j.ls.rounds
	// On the CPU backend, the small keys' values are checked for NaN and
	// ±Inf a run of keys at a time (one kernel call) and then copied
	// straight into their arrival buffers' words; a run that holds one
	// goes the per-key way (writeArrival), which finds and names it.
	var words []float32
	if j.cpu {
		words = wire.Float32View(data, nil)
	}
	sync, async, seq := j.mode == wire.ModeSync, j.mode == wire.ModeAsync, m.Seq
	deadline := j.cfg.RoundDeadline
	assign := false
	if sync {
		j.listStart(now, w, lr, ks)
		assign = j.ls.t.l != nil && j.ls.t.assign
	}
	off, checked, clean := 0, 0, 0 // words [off, clean) are finite, [clean, checked) hold a bad one
	for i, k := range ks {
		if kernels.HasPrefetch {
			prefetchAhead(ks, i, false)
		}
		n, r := k.n, rounds[i]
		lr.rs[i] = wire.ListResult{Delta: -int64(r)}
		at := off
		off += n
		if words != nil && n <= cleanKeyMax && !(sync && r < k.rounds) {
			if at >= checked {
				checked, clean = cleanRun(ks[i:], data, at)
			}
			if off <= clean {
				if buf := freeCPU(k); buf != nil {
					copy(buf.Float32s(), words[at:off])
					if async {
						j.pushListAsync(lr, i, k, buf)
						continue
					}
					if assign && k.cur == nil && j.ls.t.l != nil {
						j.listAssign(lr, i, k, buf) // listAdd's, in the loop
						continue
					}
					if j.ls.t.l != nil && j.listAdd(i, k, buf) {
						continue
					}
					// arrive's work, with the arrival written in its
					// round's slot (no 56-byte copy) and maybeClose's
					// test in the loop; a push that queues takes arrive.
					j.splitKey(k)
					r := k.cur
					if r == nil {
						r = j.openRound(now, k)
					}
					if !r.expects(w) {
						j.arrive(now, w, seq, k, &arrival{w: w, seq: seq, buf: buf, lr: lr, li: int32(i)}, buf)
						continue
					}
					r.arrive(w)
					a := r.add()
					a.w, a.buf, a.lr, a.seq, a.li = w, buf, lr, seq, int32(i)
					if r.waiting == 0 {
						j.closeRound(now, k, false)
					} else if deadline > 0 && now-r.opened >= deadline {
						j.maybeClose(now, k)
					}
					continue
				}
			}
		}
		j.pushListKey(now, lr, i, k, r, data[4*at:4*off])
	}
	j.listEnd(len(ks))
	clear(ks)
	if lr.left > 0 {
		j.hold(w, m.Seq)
	}
}

// prefetchAhead asks for the lines a list's loop reads of the keys ahead
// of key i (kernels.Prefetch): the key's first line 2*pfAhead on, and
// pfAhead on the buffer the loop reads (a pull: the key's value) or
// writes (a push: its spare), a CPUBuffer and its first words, one object
// for a small key (compute's inlineBuffer). n and both buffers are in a
// key's first 56 bytes (TestKeyLayout keeps a key within 80); a push
// list's cleanRun has read them already. Keys lie in chunks but each
// buffer is its own object: without this, the loop waits for a miss or
// two a key (RATIONALE: "Why does a list call prefetch its keys' lines a
// few keys ahead?").
func prefetchAhead(ks []*key, i int, pull bool) {
	if j := i + 2*pfAhead; pull && j < len(ks) {
		kernels.Prefetch(unsafe.Pointer(ks[j]))
	}
	j := i + pfAhead
	if j >= len(ks) {
		return
	}
	b := ks[j].spare
	if pull {
		b = ks[j].stored
	}
	if cb, ok := b.(*compute.CPUBuffer); ok && cb != nil {
		kernels.Prefetch(unsafe.Pointer(cb))
		kernels.PrefetchOff(unsafe.Pointer(cb), 64)
	}
}

// pfAhead is how many keys ahead prefetchAhead asks for a key's buffer.
const pfAhead = 8

// Checked runs of a push list (pushList): keys of up to cleanKeyMax words
// (above, the backend's own checked write, which may split a big one over
// its goroutines), runs of up to cleanRunMax words (the run stays in the
// cache between its check and its copies).
const (
	cleanKeyMax = 1 << 12
	cleanRunMax = 1 << 14
)

// cleanRun checks the run of keys from ks[0] (which has at most
// cleanKeyMax words) whose values start at word off of data: it returns the run's end
// and, if every value in it is finite, the same end, else off.
func cleanRun(ks []*key, data []byte, off int) (end, clean int) {
	end = off
	for _, k := range ks {
		if k.n > cleanKeyMax || end+k.n-off > cleanRunMax {
			break
		}
		end += k.n
	}
	if kernels.FirstNonFinite(data[4*off:4*end]) >= 0 {
		return end, off
	}
	return end, end
}

// pushListKey handles key i of push list lr as a single push of data for
// round would be handled.
func (j *Job) pushListKey(now time.Duration, lr *listReq, i int, k *key, round uint64, d []byte) {
	w := lr.w
	if j.mode == wire.ModeSync && round < k.rounds {
		if j.ls.t.l != nil {
			j.listStop(i)
		}
		j.stats.LatePushes++
		j.listSettle(lr, i, k.rounds-1, wire.FlagLate, nil)
		return
	}
	buf, x, err := j.writeArrival(k, d)
	if (x >= 0 || err != nil) && j.ls.t.l != nil {
		j.listStop(i)
	}
	if x >= 0 {
		j.stats.NonFinite++
		msg := nonFiniteMsg(k, d, x, 0)
		if !j.arriveRefused(now, k, arrival{w: w, seq: lr.seq, ext: &arrivalExt{bad: msg}, lr: lr, li: int32(i)}, false) {
			j.listSettle(lr, i, 0, 0, wire.Errorf(wire.CodeBadRequest, "%s", msg))
		}
		return
	}
	if err != nil {
		j.listSettle(lr, i, 0, 0, wire.Errorf(wire.CodeInternal, "key %s: %v", k.label(), err))
		return
	}
	if j.mode == wire.ModeAsync {
		j.pushListAsync(lr, i, k, buf)
		return
	}
	if j.ls.t.l != nil && j.listAdd(i, k, buf) {
		return
	}
	j.arrive(now, w, lr.seq, k, &arrival{w: w, seq: lr.seq, buf: buf, lr: lr, li: int32(i)}, buf)
}

// pushListAsync applies key i of push list lr, written into buf, in
// dist_async: the optimizer's step at once.
func (j *Job) pushListAsync(lr *listReq, i int, k *key, buf compute.Buffer) {
	err := j.update(k, buf)
	k.putFree(buf)
	j.touch(k)
	if err != nil {
		j.listSettle(lr, i, 0, 0, wire.Errorf(updateCode(err), "key %s: optimizer step: %v", k.label(), err))
		return
	}
	k.rounds++
	j.stats.Updates++
	j.rd.Persist = true
	j.listSettle(lr, i, k.rounds-1, 0, nil)
}

// freeCPU takes a free arrival buffer of k as bufferOf would (the spare,
// else the last of the free list) when it is a CPU buffer of k's length,
// for pushList to copy checked values into; nil otherwise (then
// pushListKey writes the push the general way).
func freeCPU(k *key) *compute.CPUBuffer {
	// The spare in the caller (inlined), the free list in a call.
	if cb, ok := k.spare.(*compute.CPUBuffer); ok && cb != nil && cb.Len() == k.n {
		k.spare = nil
		return cb
	}
	return freeCPUList(k)
}

// freeCPUList is freeCPU without a spare: the last of the free list.
func freeCPUList(k *key) *compute.CPUBuffer {
	if k.spare != nil {
		return nil // a spare that is not a CPU buffer of k's length
	}
	l := len(k.free)
	if l == 0 {
		return nil
	}
	cb, ok := k.free[l-1].(*compute.CPUBuffer)
	if !ok || cb == nil || cb.Len() != k.n {
		return nil
	}
	k.free = k.free[:l-1]
	return cb
}

// settle answers arrival a with err: its list's key, or its request.
func (j *Job) settle(a *arrival, err *wire.Error) {
	if a.lr != nil {
		j.listSettle(a.lr, int(a.li), 0, 0, err)
		return
	}
	j.reject(a.w, a.seq, err)
}

// take is listSettle's work for key i of lr, closed in round r with
// flags, when the list has other keys left (it reports whether it did;
// the last key is listSettle's, which answers): small enough to inline
// in the loops that close a list's keys.
func (lr *listReq) take(i int, r uint64, flags uint16) bool {
	if lr.left <= 1 {
		return false
	}
	res := &lr.rs[i]
	res.Delta, res.Flags = res.Delta+int64(r), flags
	lr.left--
	return true
}

// listResult settles key i of lr as closed in round r with flags.
func (j *Job) listResult(lr *listReq, i int, r uint64, flags uint16) {
	if !lr.take(i, r, flags) {
		j.listSettle(lr, i, r, flags, nil)
	}
}

// listSettle settles key i of lr: answered with round and flags, or
// refused with err. The list is answered with its last key.
func (j *Job) listSettle(lr *listReq, i int, round uint64, flags uint16, err *wire.Error) {
	r := &lr.rs[i]
	if err != nil {
		*r = wire.ListResult{Code: err.Code}
		if lr.text == "" {
			lr.text = err.Msg
		}
	} else {
		r.Delta += int64(round)
		r.Flags = flags
	}
	if lr.left--; lr.left > 0 {
		return
	}
	w := lr.w
	delete(w.held, lr.seq)
	h := wire.Header{Type: wire.TypeAck, Flags: wire.FlagList, Seq: lr.seq, Count: uint32(len(lr.rs))}
	var p []byte
	if f, ok := wire.UniformList(lr.rs); ok {
		h.Flags |= f
	} else {
		start := len(j.scratch)
		j.scratch = wire.AppendListAnswer(j.scratch, lr.rs, lr.text)
		p = j.scratch[start:]
	}
	j.remember(w, lr.seq, reply{typ: wire.TypeAck, flags: h.Flags, count: h.Count, req: wire.TypePushList, msg: string(p)})
	j.send(w.conn, wire.Msg{Header: h, Payload: p})
	lr.w, lr.text = nil, ""
	j.ls.free = append(j.ls.free, lr)
}
