package kvcore

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/internal/kernels"
	"github.com/webkv/webkv/kvcore/internal/wsm"
	"github.com/webkv/webkv/kvcore/transport"
	"github.com/webkv/webkv/kvcore/wire"
)

// The dist driver: the protocol lives in a wsm.Machine (the worker side as
// a state machine, no I/O); this file only carries it out. Per shard, a
// sender goroutine sends what the Machine's Next gives (so engine workers
// never wait on the network) and a receiver goroutine feeds it what Recv
// returns; a timer goroutine feeds it ticks. Every call into the Machine
// happens under r.mu; completions (the operations' callbacks) run after
// it is released, on the goroutine that finished them.

type distRemote struct {
	t     transport.Transport
	m     *wsm.Machine
	start time.Time

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// A receiver queues a big list group's completion for a helper
	// goroutine (at most one at a time, counted in wg, with at most
	// helpQueue groups waiting) when the process has another core: see
	// dispatchOn.
	share   bool
	hmu     sync.Mutex
	helping bool       // a helper runs (under hmu)
	hq      []helpItem // groups queued for the helper (under hmu)

	mu      sync.Mutex
	keys    keyMap
	closed  bool
	bar     *barrierWait // the barrier entered last, until a call saw it end
	wake    []chan struct{}
	tick    chan struct{} // the timer's schedule changed
	next    time.Duration // when the timer fires (0: idle)
	joined  chan struct{}
	joinErr error
	free    []*call
	copies  []wsm.Copy // carry's, for the receiver that made them

	ev *eventQueue // Options.Events; nil: no events
}

// call is one store operation, the token the Machine reports back.
type call struct {
	done  func(error) // asynchronous operations
	ldone func(int, error)
	ch    chan wsm.Done
	idx   int // which key of an initList or a list
	sink  listSink
	group *listGroup // a list request's items
	then  bool       // a pushpull's push list: its pull list follows
}

func dialRemote(ctx context.Context, t transport.Transport, mode wire.Mode, events func(Event)) (*distRemote, error) {
	n := t.Shards()
	if n < 1 {
		return nil, fmt.Errorf("transport with %d shards: %w", n, ErrNoTransport)
	}
	m, err := wsm.New(wsm.Config{Shards: n, Mode: mode, Join: t.Join(), NoRoundEvents: events == nil})
	if err != nil {
		return nil, err
	}
	r := &distRemote{t: t, m: m, start: time.Now(), keys: keyMap{ints: map[int]*wsm.Key{}, strs: map[string]*wsm.Key{}}, ev: newEventQueue(events),
		tick: make(chan struct{}, 1), joined: make(chan struct{}), share: runtime.GOMAXPROCS(0) > 1}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	if w, ok := t.(transport.Watcher); ok && r.ev != nil {
		w.Watch(func(s transport.Status) {
			if s.State == transport.Reconnecting {
				r.ev.emit(Event{Kind: EventConnection, Conn: ConnReconnecting, Shard: s.Shard, Attempt: s.Attempt, Err: s.Err})
			}
		})
	}
	for range n {
		r.wake = append(r.wake, make(chan struct{}, 1))
	}
	for s := range n {
		r.wg.Add(2)
		go r.sender(s)
		go r.receiver(s)
	}
	r.wg.Add(1)
	go r.timer()
	r.mu.Lock()
	r.m.Start()
	var ds []wsm.Done
	ds = r.carry(ds)
	r.mu.Unlock()
	r.dispatch(ds)
	select {
	case <-r.joined:
	case <-ctx.Done():
		r.shutdown()
		return nil, fmt.Errorf("joining: %w", ctx.Err())
	}
	r.mu.Lock()
	err = r.joinErr
	r.mu.Unlock()
	if err != nil {
		r.shutdown()
		return nil, fmt.Errorf("joining: %w", err)
	}
	return r, nil
}

// carry takes what the Machine asked for (under r.mu): completions are
// appended to ds (to run once r.mu is released), events queued, senders
// woken, the timer rescheduled. Big answer copies (only Recv makes them)
// go to r.copies for the receiver.
func (r *distRemote) carry(ds []wsm.Done) []wsm.Done {
	rd := r.m.Ready()
	ds = append(ds, rd.Done...)
	r.copies = append(r.copies, rd.Copies...)
	for _, e := range rd.Events {
		r.event(e)
	}
	for _, s := range rd.Wake {
		select {
		case r.wake[s] <- struct{}{}:
		default:
		}
	}
	if rd.JoinErr != nil && r.joinErr == nil {
		r.joinErr = remoteErr(rd.JoinErr)
		close(r.joined)
	} else if rd.Joined && r.joinErr == nil {
		close(r.joined)
	}
	if rd.Next != 0 && (r.next == 0 || rd.Next < r.next) {
		r.next = rd.Next
		select {
		case r.tick <- struct{}{}:
		default:
		}
	}
	r.m.Clear()
	return ds
}

// dispatch runs completions (not under r.mu) and clears ds. The calls of
// asynchronous operations go back to the free list a batch at a time.
func (r *distRemote) dispatch(ds []wsm.Done) { r.dispatchOn(ds, false) }

// dispatchOn is dispatch; share (a receiver's, r.share) queues the
// completion of a list group of at least shareKeys keys (a pull's values
// copied into the keys' outputs; the operation's variables released with
// its last group) for a helper goroutine (offer), and the receiver reads
// the next answer meanwhile; with helpQueue groups already waiting it
// completes the group itself. At the end of a many-keys round the
// answers of the last pull lists arrive faster than one goroutine
// completes them; two share them. The receiver (counted in r.wg) counts
// the helper there too, so shutdown waits for it; shutdown's own
// dispatch, after that wait, never shares.
func (r *distRemote) dispatchOn(ds []wsm.Done, share bool) {
	var spent [128]*call
	n := 0
	flush := func() {
		r.mu.Lock()
		for _, c := range spent[:n] {
			*c = call{}
			r.free = append(r.free, c)
		}
		r.mu.Unlock()
		clear(spent[:n])
		n = 0
	}
	for i := range ds {
		d := &ds[i]
		c := d.Tok.(*call)
		switch {
		case c.ch != nil:
			c.ch <- *d
		case c.ldone != nil:
			f, idx := c.ldone, c.idx
			spent[n], n = c, n+1
			f(idx, remoteErr(d.Err))
		case c.sink != nil:
			sink, g, then := c.sink, c.group, c.then
			spent[n], n = c, n+1
			switch {
			case then && d.Err == nil:
				r.pullGroup(sink, g) // a pushpull list's pull, once its push was answered
			case threads && share && len(g.idx) >= shareKeys && r.offer(sink, g, remoteErr(d.Err)):
			default:
				sink.groupDone(g, remoteErr(d.Err))
			}
		default:
			done := c.done
			spent[n], n = c, n+1
			done(remoteErr(d.Err))
		}
		if n == len(spent) {
			flush()
		}
		ds[i] = wsm.Done{}
	}
	if n > 0 {
		flush()
	}
}

// shareKeys is the smallest list group whose completion a receiver hands
// to a helper: about 25 us of work at least, well above starting and
// waking a goroutine.
const shareKeys = 256

// threads is whether goroutines may run in parallel: not on wasm, whose
// runtime has one thread (there the helper would only cost code: the
// browser runtime's size budget).
const threads = runtime.GOARCH != "wasm"

// helpItem is a list group queued for the helper.
type helpItem struct {
	sink listSink
	g    *listGroup
	err  error
}

// helpQueue is how many groups may wait for the helper: a receiver whose
// helper is that far behind completes the next group itself (so the
// queue is bounded, and the receiver's reads slow down with the
// helper). The helper takes the queued groups one after another and
// exits when none is left: the receiver starts a goroutine (and waits,
// when that goroutine takes the receiver's P: see RATIONALE) once per
// run of groups, not once per group.
const helpQueue = 2

// offer queues g for the helper, starting one if none runs, unless the
// queue is full: false then (the receiver completes g).
func (r *distRemote) offer(sink listSink, g *listGroup, err error) bool {
	r.hmu.Lock()
	defer r.hmu.Unlock()
	if len(r.hq) >= helpQueue {
		return false
	}
	r.hq = append(r.hq, helpItem{sink, g, err})
	if !r.helping {
		r.helping = true
		r.wg.Add(1)
		go r.help()
	}
	return true
}

// help completes the queued groups until none is left.
func (r *distRemote) help() {
	defer r.wg.Done()
	for {
		r.hmu.Lock()
		if len(r.hq) == 0 {
			r.helping = false
			r.hmu.Unlock()
			return
		}
		it := r.hq[0]
		copy(r.hq, r.hq[1:])
		r.hq[len(r.hq)-1] = helpItem{}
		r.hq = r.hq[:len(r.hq)-1]
		r.hmu.Unlock()
		it.sink.groupDone(it.g, it.err)
	}
}

func (r *distRemote) event(e wsm.Event) {
	if r.ev == nil {
		return
	}
	switch e.Kind {
	case wsm.EventRound:
		k, _ := e.Key.Ref.(Key)
		r.ev.emit(Event{Kind: EventRound, Key: k, Round: e.Round, Late: e.Late, Rescaled: e.Rescaled})
	case wsm.EventMembers:
		r.ev.emit(Event{Kind: EventMembership, Rank: e.Rank, NumWorkers: e.Workers, Live: e.Members})
	case wsm.EventConn:
		ev := Event{Kind: EventConnection, Shard: e.Shard}
		switch e.Conn {
		case wsm.Connected:
			ev.Conn = ConnConnected
		case wsm.Reconnected:
			ev.Conn = ConnReconnected
		case wsm.Lost:
			if r.ctx.Err() != nil {
				return // Store.Close
			}
			ev.Conn, ev.Err = ConnLost, remoteErr(e.Err)
		}
		r.ev.emit(ev)
	}
}

// lostError is an error of the Machine's ErrLost: errors.Is also matches
// ErrConnLost, the store's sentinel, and the sentinel of the server's
// error that ended the connection, if one did (ErrAuth for a refusal).
type lostError struct {
	err    error
	server error // serverErr of the wire error in err's chain, if any
}

func (e *lostError) Error() string { return e.err.Error() }
func (e *lostError) Unwrap() error { return e.err }
func (e *lostError) Is(target error) bool {
	return target == ErrConnLost || e.server != nil && errors.Is(e.server, target)
}

// remoteErr turns a Machine's error into the store's: server errors into
// kvcore sentinels, lost connections into ErrConnLost, closing into
// ErrClosed.
func remoteErr(err error) error {
	if err == nil {
		return nil
	}
	var we *wire.Error
	switch {
	case errors.Is(err, wsm.ErrLost):
		le := &lostError{err: err}
		if errors.As(err, &we) {
			le.server = serverErr(we)
		}
		return le
	case errors.As(err, &we):
		return serverErr(we)
	case errors.Is(err, wsm.ErrClosed):
		return ErrClosed
	}
	return err
}

// ---- goroutines ----

func (r *distRemote) sender(s int) {
	defer r.wg.Done()
	var ds []wsm.Done
	for {
		r.mu.Lock()
		out, ok := r.m.Next(s)
		r.mu.Unlock()
		if !ok {
			select {
			case <-r.wake[s]:
				continue
			case <-r.ctx.Done():
				return
			}
		}
		// A failed send needs nothing here: the message is resent after
		// the transport announces its new connection, or the shard fails
		// when the transport reports its end.
		_ = r.t.Send(r.ctx, s, out.Epoch, out.Head, out.Body)
		r.mu.Lock()
		r.m.Written(s)
		ds = r.carry(ds[:0])
		r.mu.Unlock()
		r.dispatch(ds)
	}
}

func (r *distRemote) receiver(s int) {
	defer r.wg.Done()
	var ds []wsm.Done
	var copies []wsm.Copy
	for {
		msg, e, err := r.t.Recv(r.ctx, s)
		r.mu.Lock()
		switch {
		case err == nil:
			r.m.Recv(s, e, msg)
		case errors.Is(err, transport.ErrReconnected) && r.ctx.Err() == nil:
			r.m.Reconnected(s, e)
		default:
			if r.ctx.Err() != nil {
				r.mu.Unlock()
				return // Store.Close: shutdown fails what is left
			}
			r.m.Lost(s, err)
		}
		ds = r.carry(ds[:0])
		copies = append(copies[:0], r.copies...)
		clear(r.copies)
		r.copies = r.copies[:0]
		r.mu.Unlock()
		if len(copies) > 0 {
			// The values of big answers go out of the frame before it
			// is reused, off the lock, so shards copy in parallel; their
			// operations complete after (Copied).
			for i, c := range copies {
				wire.DecodeFloat32s(c.Src, c.Dst)
				copies[i] = wsm.Copy{}
			}
			r.mu.Lock()
			r.m.Copied(s)
			ds = r.carry(ds)
			r.mu.Unlock()
		}
		r.dispatchOn(ds, r.share)
		if err != nil && !errors.Is(err, transport.ErrReconnected) {
			return
		}
	}
}

func (r *distRemote) timer() {
	defer r.wg.Done()
	t := time.NewTimer(time.Hour)
	t.Stop()
	var ds []wsm.Done
	for {
		select {
		case <-r.ctx.Done():
			t.Stop()
			return
		case <-r.tick:
		case <-t.C:
			r.mu.Lock()
			r.next = 0
			r.m.Tick(time.Since(r.start))
			ds = r.carry(ds[:0])
			r.mu.Unlock()
			r.dispatch(ds)
		}
		r.mu.Lock()
		next := r.next
		r.mu.Unlock()
		if next != 0 {
			t.Reset(max(next-time.Since(r.start), time.Millisecond))
		}
	}
}

// ---- calls ----

func (r *distRemote) newCall(done func(error)) *call {
	if n := len(r.free); n > 0 {
		c := r.free[n-1]
		r.free = r.free[:n-1]
		c.done = done
		return c
	}
	return &call{done: done}
}

func (r *distRemote) rank() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m.Rank()
}

func (r *distRemote) numWorkers() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m.NumWorkers()
}

func keyID(k Key) (uint64, bool) {
	if k.isStr {
		return wire.StrKeyID(k.s), true
	}
	return wire.IntKeyID(k.i), false
}

// syncCall runs start (under r.mu) and waits for its Done; when ctx ends
// first, the operation is cancelled.
func (r *distRemote) syncCall(ctx context.Context, start func(c *call) error) (wsm.Done, error) {
	c := &call{ch: make(chan wsm.Done, 1)}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return wsm.Done{}, ErrClosed
	}
	err := start(c)
	var ds []wsm.Done
	ds = r.carry(ds)
	r.mu.Unlock()
	r.dispatch(ds)
	if err != nil {
		return wsm.Done{}, remoteErr(err)
	}
	select {
	case d := <-c.ch:
		return d, remoteErr(d.Err)
	case <-ctx.Done():
		r.mu.Lock()
		r.m.Cancel(c)
		r.mu.Unlock()
		return wsm.Done{}, ctx.Err()
	}
}

func (r *distRemote) initList(ctx context.Context, keys []Key, shapes [][]int, data [][]float32) []error {
	errs := make([]error, len(keys))
	ch := make(chan wsm.Done, len(keys))
	calls := make([]*call, len(keys))
	wks := make([]*wsm.Key, len(keys))
	r.mu.Lock()
	for i, k := range keys {
		if r.closed {
			errs[i] = ErrClosed
			continue
		}
		if r.keys.get(k) != nil {
			errs[i] = ErrDuplicateInit
			continue
		}
		id, str := keyID(k)
		spec := wsm.KeySpec{ID: id, Str: str, N: len(data[i])}
		if str {
			spec.Name = k.s
		}
		for _, d := range shapes[i] {
			spec.Shape = append(spec.Shape, int64(d))
		}
		c := &call{ch: ch, idx: i}
		wk, err := r.m.InitKey(c, spec, data[i])
		if err != nil {
			errs[i] = fmt.Errorf("key %v: %w (%v)", k, ErrShapeMismatch, err)
			continue
		}
		wk.Ref = k
		r.keys.set(k, wk)
		calls[i], wks[i] = c, wk
	}
	ds := r.carry(nil)
	r.mu.Unlock()
	r.dispatch(ds)
wait:
	for left := countNonNil(calls); left > 0; left-- {
		select {
		case d := <-ch:
			errs[d.Tok.(*call).idx] = remoteErr(d.Err)
			calls[d.Tok.(*call).idx] = nil
		case <-ctx.Done():
			// Abandon the inits still waiting (their keys are forgotten
			// below, so the caller can retry).
			r.mu.Lock()
			for i, c := range calls {
				if c != nil {
					r.m.Cancel(c)
					errs[i] = ctx.Err()
				}
			}
			r.mu.Unlock()
			break wait
		}
	}
	r.mu.Lock()
	for i, err := range errs {
		if err != nil && wks[i] != nil && !errors.Is(err, ErrDuplicateInit) {
			if r.keys.get(keys[i]) == wks[i] {
				r.keys.del(keys[i])
			}
			r.m.ForgetKey(wks[i])
		}
	}
	r.mu.Unlock()
	return errs
}

func countNonNil(cs []*call) int {
	n := 0
	for _, c := range cs {
		if c != nil {
			n++
		}
	}
	return n
}

// async starts an asynchronous operation; done runs exactly once.
func (r *distRemote) async(k Key, done func(error), start func(c *call, wk *wsm.Key) error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		done(ErrClosed)
		return
	}
	wk := r.keys.get(k)
	if wk == nil {
		r.mu.Unlock()
		done(ErrUnknownKey)
		return
	}
	c := r.newCall(done)
	err := start(c, wk)
	if err != nil {
		*c = call{}
		r.free = append(r.free, c)
		r.mu.Unlock()
		if errors.Is(err, wsm.ErrArg) {
			err = fmt.Errorf("%w (%v)", ErrShapeMismatch, err)
		}
		done(remoteErr(err))
		return
	}
	ds := r.carry(nil)
	r.mu.Unlock()
	r.dispatch(ds)
}

func dtypeOf(c compute.Compression) wire.DType {
	switch c.Kind {
	case compute.Compress2Bit:
		return wire.DType2Bit
	case compute.Compress1Bit:
		return wire.DType1Bit
	}
	return wire.DTypeF32
}

func (r *distRemote) push(k Key, data []float32, n int, c compute.Compression, done func(error)) {
	r.async(k, done, func(cl *call, wk *wsm.Key) error {
		return r.m.Push(cl, wk, dtypeOf(c), data, n)
	})
}

func (r *distRemote) pull(k Key, out []float32, done func(error)) {
	r.async(k, done, func(cl *call, wk *wsm.Key) error {
		return r.m.Pull(cl, wk, out)
	})
}

func (r *distRemote) pushPull(k Key, data []float32, n int, c compute.Compression, out []float32, done func(error)) {
	r.async(k, done, func(cl *call, wk *wsm.Key) error {
		return r.m.PushPull(cl, wk, dtypeOf(c), data, n, out)
	})
}

func (r *distRemote) list(push, pull bool, c compute.Compression, items []listItem, sink listSink, gs *[]listGroup) {
	type fail struct {
		i   int
		err error
	}
	var fails []fail
	// cur[2*s] is shard s's open group of int keys, cur[2*s+1] its group
	// of string keys (-1: none; a list is of one kind); full groups stay
	// in groups, a new one opens after them. A group's list request is
	// built as its keys join (wsm.ListAdd: the key is checked, held and
	// written into the request's table in this one pass; the group's
	// room, distListBytes of values, is the request's).
	then := push && pull
	groups := (*gs)[:0]
	var curBuf [8]int
	cur := curBuf[:0]
	for range 2 * r.t.Shards() {
		cur = append(cur, -1)
	}
	// join adds listable key wk of slot to the slot's open group, or to a
	// new one when that one is full, and returns the group (nil: it did
	// not join, and goes on its own).
	join := func(slot int, wk *wsm.Key, left int) *listGroup {
		if gi := cur[slot]; gi >= 0 && r.m.ListAdd(&groups[gi].req, wk) {
			return &groups[gi]
		}
		if len(groups) < cap(groups) {
			groups = groups[:len(groups)+1]
		} else {
			groups = append(groups, listGroup{})
		}
		g := &groups[len(groups)-1]
		g.idx, g.vals, g.elems = g.idx[:0], g.vals[:0], 0
		elems := wk.N()
		if want := min(distListBytes/4, elems*left); push && cap(g.vals) < want {
			// A push group's values fill up to distListBytes: sized once
			// for the call's keys left if they are the size of the one
			// opening the group (a list's keys mostly are), not regrown
			// then; a group of bigger keys grows by append.
			g.vals = make([]float32, 0, want)
		}
		g.c = r.newCall(nil)
		g.c.sink, g.c.then = sink, then
		g.req.StartList(g.c, push, min(left, distListBytes/4/max(elems, 1)), distListBytes/4, g.keys)
		cur[slot] = len(groups) - 1
		if r.m.ListAdd(&g.req, wk) {
			return g
		}
		return nil
	}
	// g is the group the last listed key joined: the next key goes
	// straight to ListAdd with it, which refuses a key of another shard
	// or kind, a key that is not listable and a key the group has no
	// room for; only then does the key look for its group (join).
	var g *listGroup
	listed := c.Kind == compute.CompressNone // compressed pushes go on their own
	r.mu.Lock()
	if r.closed {
		for i := range items {
			if items[i].dn >= 0 {
				fails = append(fails, fail{i, ErrClosed})
			}
		}
		items = nil // nothing to send
	}
	for i := 0; i < len(items); i++ {
		if g != nil && listed {
			// The keys that join g, in a loop of their own (listRun);
			// the key it stopped at goes through the general way.
			if i = r.listRun(g, push, items, i); i == len(items) {
				break
			}
		}
		it := &items[i]
		if it.dn < 0 {
			continue // failed before the network: the caller reports it
		}
		wk := r.keys.get(it.k)
		if wk == nil {
			fails = append(fails, fail{i, ErrUnknownKey})
			continue
		}
		// List requests per shard and key kind: the plain pushes, pulls
		// or pushpulls (a push list, then a pull list once it is
		// answered) of small whole keys; the others go on their own.
		// The last key's group, g, was offered this key in listRun and
		// refused it: it looks for its own (join).
		if listed && (!push || it.dn == wk.N()) && r.m.Listable(wk) {
			// slot < 0 for a split key, which is not Listable
			if jg := join(2*wk.ListShard()+b2i(it.k.isStr), wk, len(items)-i); jg != nil {
				g = jg // g is new, or another slot's: groups may have moved
				g.take(int32(i), it, push)
				continue
			}
		}
		cl := r.newCall(nil)
		cl.ldone, cl.idx = sink.itemDone, i
		var err error
		switch {
		case push && pull:
			err = r.m.PushPull(cl, wk, dtypeOf(c), it.words(), it.n, it.outs())
		case push:
			err = r.m.Push(cl, wk, dtypeOf(c), it.words(), it.n)
		default:
			err = r.m.Pull(cl, wk, it.outs())
		}
		if err != nil {
			*cl = call{}
			r.free = append(r.free, cl)
			if errors.Is(err, wsm.ErrArg) {
				err = fmt.Errorf("%w (%v)", ErrShapeMismatch, err)
			}
			fails = append(fails, fail{i, remoteErr(err)})
		}
	}
	// Failures (a closed Machine) come back as the groups' Done.
	for gi := range groups {
		g := &groups[gi]
		g.elems = g.req.Total()
		if !push {
			g.vals = slices.Grow(g.vals[:0], g.elems)[:g.elems]
		}
		gc := g.c
		g.c = nil
		gc.group = g // not before: groups may have moved as it grew
		err := r.m.SendList(&g.req, g.vals)
		g.keys = g.req.Keys()
		if err != nil {
			// No key joined (they all went on their own): nothing was
			// sent, no Done follows.
			*gc = call{}
			r.free = append(r.free, gc)
		}
	}
	*gs = groups
	ds := r.carry(nil)
	r.mu.Unlock()
	r.dispatch(ds)
	for _, f := range fails {
		sink.itemDone(f.i, f.err)
	}
}

// listRun adds items[i:] to group g while they join it (a listed key of
// the call, known, that ListAdd takes: of g's shard and kind, listable,
// with room in g) and returns the index of the first that does not (or
// len(items)). It is list's loop for the keys of one group, with the few
// values that loop needs: every register is the caller's in Go's calling
// convention, so each value live across ListAdd's call is reloaded after
// it (RATIONALE: "Why does ListAdd alone check a key that joins a
// list, and list's loop for one group's keys run on its own?").
func (r *distRemote) listRun(g *listGroup, push bool, items []listItem, i int) int {
	for ; i < len(items); i++ {
		if j := i + pfAhead; kernels.HasPrefetch && j < len(items) {
			// The lines this loop reads of a key pfAhead on: its
			// wsm.Key and, for a push, its values.
			pt := &items[j]
			r.keys.prefetch(pt.k)
			if pt.data != nil {
				kernels.Prefetch(unsafe.Pointer(pt.data))
			}
		}
		it := &items[i]
		wk := r.keys.get(it.k)
		if wk == nil || it.dn < 0 || push && it.dn != wk.N() || !r.m.ListAdd(&g.req, wk) {
			break
		}
		g.take(int32(i), it, push)
	}
	return i
}

// take records item i, which joined g's list request: its index and, for
// a push, its values.
func (g *listGroup) take(i int32, it *listItem, push bool) {
	g.idx = append(g.idx, i)
	if push {
		g.vals = append(g.vals, it.words()...)
	}
}

// pullGroup sends the pull list of g's keys (their pushpull's second
// half): the values come back into g.vals.
func (r *distRemote) pullGroup(sink listSink, g *listGroup) {
	r.mu.Lock()
	var err error
	if r.closed {
		err = ErrClosed
	} else {
		c := r.newCall(nil)
		c.sink, c.group = sink, g
		g.vals = slices.Grow(g.vals[:0], g.elems)[:g.elems]
		if err = r.m.PullList(c, g.keys, g.vals); err != nil {
			*c = call{}
			r.free = append(r.free, c)
			err = remoteErr(err)
		}
	}
	ds := r.carry(nil)
	r.mu.Unlock()
	r.dispatch(ds)
	if err != nil {
		sink.groupDone(g, err)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// barrierWait is the barrier this worker entered last; it outlives a
// Barrier call whose context ended, because the server counts the arrival
// anyway: the next Barrier call waits for that same barrier instead of
// entering a new one, so the workers' barriers stay aligned.
type barrierWait struct {
	done chan struct{}
	err  error
}

func (r *distRemote) barrier(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	b := r.bar
	if b == nil {
		b = &barrierWait{done: make(chan struct{})}
		r.bar = b
		c := r.newCall(func(err error) {
			b.err = err
			close(b.done)
		})
		err := r.m.Barrier(c)
		ds := r.carry(nil)
		r.mu.Unlock()
		r.dispatch(ds)
		if err != nil {
			b.err = remoteErr(err)
			close(b.done)
		}
	} else {
		r.mu.Unlock()
	}
	select {
	case <-b.done:
		r.mu.Lock()
		if r.bar == b {
			r.bar = nil
		}
		r.mu.Unlock()
		return b.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *distRemote) command(ctx context.Context, head int, body []byte) error {
	_, err := r.syncCall(ctx, func(c *call) error { return r.m.Command(c, head, body) })
	return err
}

// Command heads the servers understand (MXNet's CommandType).
const (
	cmdController  = 0
	cmdCompression = 4
)

func (r *distRemote) setOptimizer(ctx context.Context, spec []byte) error {
	return r.command(ctx, cmdController, spec)
}

func (r *distRemote) setCompression(ctx context.Context, c compute.Compression) error {
	body := fmt.Appendf(nil, "%v,%s", c.Kind, formatFloat32(c.Threshold))
	return r.command(ctx, cmdCompression, body)
}

func (r *distRemote) saveStates(ctx context.Context) (*stateSnapshot, error) {
	d, err := r.syncCall(ctx, func(c *call) error { return r.m.SaveStates(c) })
	if err != nil {
		return nil, err
	}
	return r.mergeStates(d.States)
}

// mergeStates assembles the shards' tables into one snapshot: parts of a
// split key are put together by offset.
func (r *distRemote) mergeStates(states []*wire.States) (*stateSnapshot, error) {
	snap := &stateSnapshot{}
	type acc struct {
		ks  keyStates
		got int
	}
	byKey := map[Key]*acc{}
	var order []Key
	for si, st := range states {
		if st == nil {
			return nil, fmt.Errorf("shard %d sent no states: %w", si, ErrServer)
		}
		if si == 0 {
			snap.Optimizer = st.Optimizer
		}
		snap.NumUpdate = max(snap.NumUpdate, st.NumUpdate)
		for _, ks := range st.Keys {
			var k Key
			if ks.Str {
				k = StrKey(ks.Name)
			} else {
				k = IntKey(int(int64(ks.Key)))
			}
			a := byKey[k]
			if a == nil {
				a = &acc{ks: keyStates{Key: k, T: ks.T, N: int(ks.Total)}}
				for range ks.States {
					a.ks.States = append(a.ks.States, make([]float32, ks.Total))
				}
				byKey[k] = a
				order = append(order, k)
			}
			if len(ks.States) != len(a.ks.States) || int(ks.Total) != a.ks.N {
				return nil, fmt.Errorf("key %v: shards disagree on its states: %w", k, ErrBadStates)
			}
			a.ks.T = max(a.ks.T, ks.T)
			for i, s := range ks.States {
				copy(a.ks.States[i][ks.Offset:], s)
			}
			a.got += int(ks.N)
		}
	}
	slices.SortFunc(order, func(a, b Key) int {
		switch {
		case a.isStr != b.isStr:
			if !a.isStr {
				return -1
			}
			return 1
		case a.isStr:
			return compareStr(a.s, b.s)
		}
		return a.i - b.i
	})
	for _, k := range order {
		a := byKey[k]
		if a.got != a.ks.N {
			return nil, fmt.Errorf("key %v: shards sent %d of its %d state values: %w", k, a.got, a.ks.N, ErrBadStates)
		}
		snap.Keys = append(snap.Keys, a.ks)
	}
	return snap, nil
}

func compareStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (r *distRemote) loadStates(ctx context.Context, s *stateSnapshot) error {
	shards := r.t.Shards()
	per := make([]wire.States, shards)
	for i := range per {
		per[i] = wire.States{Optimizer: s.Optimizer, NumUpdate: s.NumUpdate}
	}
	r.mu.Lock()
	for _, ks := range s.Keys {
		wk := r.keys.get(ks.Key)
		if wk == nil {
			r.mu.Unlock()
			return fmt.Errorf("key %v: %w", ks.Key, ErrUnknownKey)
		}
		if ks.N != wk.N() {
			r.mu.Unlock()
			return fmt.Errorf("key %v has %d values in the file, %d stored: %w", ks.Key, ks.N, wk.N(), ErrBadStates)
		}
		for _, p := range wk.Parts() {
			e := wire.KeyStates{Key: wk.ID(), Str: wk.Str(), Name: wk.Name(), T: ks.T,
				Offset: uint32(p.Offset), Total: uint32(wk.N()), N: uint32(p.Len)}
			for _, st := range ks.States {
				e.States = append(e.States, st[p.Offset:p.Offset+p.Len])
			}
			per[p.Shard].Keys = append(per[p.Shard].Keys, e)
		}
	}
	r.mu.Unlock()
	tables := make([][]byte, shards)
	for i := range per {
		tables[i] = wire.AppendStates(nil, &per[i])
	}
	_, err := r.syncCall(ctx, func(c *call) error { return r.m.LoadStates(c, tables) })
	return err
}

func (r *distRemote) close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.mu.Unlock()
	// Leave cleanly, so the servers drop this worker from rounds and
	// barriers now instead of after the silence timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, lerr := r.syncCall(ctx, func(c *call) error { return r.m.Leave(c) })
	cancel()
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.shutdown()
	if lerr != nil && !errors.Is(lerr, ErrConnLost) && !errors.Is(lerr, ErrClosed) && !errors.Is(lerr, context.DeadlineExceeded) {
		return fmt.Errorf("leave: %w", lerr)
	}
	return nil
}

// shutdown stops the goroutines, closes the transport and fails whatever
// is still pending (ErrClosed).
func (r *distRemote) shutdown() {
	r.cancel()
	r.t.Close()
	r.wg.Wait()
	r.mu.Lock()
	r.closed = true
	r.m.Close()
	ds := r.carry(nil)
	r.mu.Unlock()
	r.dispatch(ds)
	r.ev.close()
}

func formatFloat32(f float32) string {
	return strconv.FormatFloat(float64(f), 'g', -1, 32)
}

// keyMap finds the Machine's key of a store key: int keys from 0 up in a
// slice indexed by the key (a list call of 100,000 keys looks each up: a
// map lookup in a map that big misses the cache every time), other int
// keys and string keys in maps of their own. The slice grows only to about
// twice the number of int keys (plus denseSlack), so a sparse or huge key
// costs no memory.
type keyMap struct {
	dense []*wsm.Key
	n     int // int keys held in dense
	ints  map[int]*wsm.Key
	strs  map[string]*wsm.Key
}

// denseSlack is how far past twice its int keys the dense slice may grow.
const denseSlack = 1024

func (m *keyMap) get(k Key) *wsm.Key {
	if k.isStr {
		return m.strs[k.s]
	}
	if k.i >= 0 && k.i < len(m.dense) {
		if wk := m.dense[k.i]; wk != nil {
			return wk
		}
	}
	return m.ints[k.i]
}

// prefetch asks for the line of k's *wsm.Key when k is in dense (where a
// list's int keys are), ahead of a get.
func (m *keyMap) prefetch(k Key) {
	if !k.isStr && k.i >= 0 && k.i < len(m.dense) {
		kernels.Prefetch(unsafe.Pointer(m.dense[k.i]))
	}
}

func (m *keyMap) set(k Key, wk *wsm.Key) {
	if k.isStr {
		m.strs[k.s] = wk
		return
	}
	m.del(k)
	if k.i >= 0 && k.i < 2*(m.n+len(m.ints)+1)+denseSlack {
		if k.i >= len(m.dense) {
			m.dense = append(m.dense, make([]*wsm.Key, k.i+1-len(m.dense))...)
			m.dense = m.dense[:cap(m.dense)]
		}
		m.dense[k.i] = wk
		m.n++
		return
	}
	m.ints[k.i] = wk
}

func (m *keyMap) del(k Key) {
	if k.isStr {
		delete(m.strs, k.s)
		return
	}
	if k.i >= 0 && k.i < len(m.dense) && m.dense[k.i] != nil {
		m.dense[k.i] = nil
		m.n--
	}
	delete(m.ints, k.i)
}
