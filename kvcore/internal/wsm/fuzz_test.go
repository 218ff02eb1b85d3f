package wsm_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore/internal/wsm"
	"github.com/webkv/webkv/kvcore/psm"
	"github.com/webkv/webkv/kvcore/transport"
	"github.com/webkv/webkv/kvcore/wire"
)

// FuzzAgainstServer runs worker Machines against real parameter-server
// state machines (package psm), every byte of the input choosing what
// happens next: a worker sends a message, the network delivers one either
// way, a connection breaks (what was in flight on it is lost, the worker
// reconnects on a new epoch), time passes, a worker pushes or pulls a key,
// a job restarts from its snapshot. Throughout, the properties of the
// protocol are checked as they happen:
//
//   - on every connection, the first message a server reads is a Hello,
//     and no request reaches a server before its worker was welcomed on
//     that connection (the server would answer CodeNotJoined);
//   - no request is sent twice on one epoch, and every request a worker
//     resends keeps its seq;
//   - no shard has more in flight than its window allows (one request
//     bigger than the window may go alone);
//
// and at the end, once the network is healed and every worker pushed every
// key up to the same round: every operation finished without error, and
// every key holds the sum of the last round's pushes (a push applied twice
// or lost would break the rounds).
func FuzzAgainstServer(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	f.Add([]byte("push pull break deliver send tick restart, and again and again"))
	seed := make([]byte, 600)
	for i := range seed {
		seed[i] = byte(i * 37)
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, script []byte) {
		w := newWorld(t, 2, 2, 5)
		w.run(script)
		w.heal()
	})
}

// TestAgainstServer runs the fuzz target's world over long pseudo-random
// scripts (the fuzzer's corpus runs too, in FuzzAgainstServer).
func TestAgainstServer(t *testing.T) {
	n := 40
	if testing.Short() {
		n = 8
	}
	for i := range n {
		script := make([]byte, 3000)
		x := uint64(i*7919 + 1)
		for j := range script {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			script[j] = byte(x)
		}
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			w := newWorld(t, 2+i%2, 1+i%3, 7)
			w.run(script)
			w.heal()
			rec, rounds := 0, 0
			for _, wk := range w.ws {
				for s := range w.jobs {
					rec += wk.m.Reconnects(s)
				}
				for _, r := range wk.rounds {
					rounds += r
				}
			}
			t.Logf("%d workers, %d shards: %d reconnects, %d job restarts, %d pushes, %d list requests", len(w.ws), len(w.jobs), rec, w.restart, rounds, w.lists)
			if w.lists == 0 {
				t.Error("no list request was sent")
			}
		})
	}
}

type conn struct {
	id      psm.ConnID
	epoch   transport.Epoch
	up      [][]byte // worker to server, not yet read
	down    [][]byte // server to worker, not yet read
	first   bool     // the server read nothing on it yet
	welcome bool     // the server welcomed the worker on it
	sent    map[uint64]bool
}

type worker struct {
	m      *wsm.Machine
	conns  []*conn // by shard
	keys   []*wsm.Key
	rounds []int       // pushes issued per key
	outs   [][]float32 // pull outputs by key
	open   map[string]bool
}

type world struct {
	t       *testing.T
	now     time.Duration
	jobs    []*psm.Job
	owner   map[psm.ConnID][2]int // conn -> worker, shard
	ws      []*worker
	nextID  psm.ConnID
	nkeys   int
	keyLen  []int
	restart int
	lists   int // list requests sent (resends included)
}

func newWorld(t *testing.T, workers, shards, nkeys int) *world {
	w := &world{t: t, owner: map[psm.ConnID][2]int{}, nkeys: nkeys}
	for s := range shards {
		j, err := psm.New(psm.Config{Job: "f", Shard: s, Shards: shards, Heartbeat: time.Hour, Timeout: 100 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		w.jobs = append(w.jobs, j)
	}
	for k := range nkeys {
		w.keyLen = append(w.keyLen, 1+k*3) // key 4 (13 elements) is split over the shards (bound 8)
	}
	for i := range workers {
		m, err := wsm.New(wsm.Config{Shards: shards, Mode: wire.ModeSync,
			Join:   transport.Join{Job: "f", Workers: workers, BigArrayBound: 8},
			Window: wsm.Window{Requests: 3, Bytes: 400, Messages: 2}, BatchEntries: 3,
			NoRoundEvents: i == 1}) // both ways of taking a push list's Ack (applyList)
		if err != nil {
			t.Fatal(err)
		}
		wk := &worker{m: m, open: map[string]bool{}}
		for s := range shards {
			wk.conns = append(wk.conns, w.connect(i, s, transport.FirstEpoch))
		}
		w.ws = append(w.ws, wk)
		m.Start()
	}
	// Join: deliver everything until every worker is joined.
	for range 1000 {
		if !w.step() {
			break
		}
	}
	for i, wk := range w.ws {
		if !wk.m.Joined() {
			t.Fatalf("worker %d did not join", i)
		}
	}
	// Every worker inits every key (rank 0's value wins: 10*k + i).
	for i, wk := range w.ws {
		for k := range nkeys {
			v := make([]float32, w.keyLen[k])
			for e := range v {
				v[e] = float32(10*k + e + 100*i)
			}
			tok := fmt.Sprintf("init %d", k)
			key, err := wk.m.InitKey(tok, wsm.KeySpec{ID: uint64(k), Shape: []int64{int64(len(v))}, N: len(v)}, v)
			if err != nil {
				t.Fatal(err)
			}
			wk.keys = append(wk.keys, key)
			wk.rounds = append(wk.rounds, 0)
			wk.outs = append(wk.outs, make([]float32, len(v)))
			wk.open[tok] = true
		}
	}
	return w
}

func (w *world) connect(wi, s int, e transport.Epoch) *conn {
	w.nextID++
	c := &conn{id: w.nextID, epoch: e, first: true, sent: map[uint64]bool{}}
	w.owner[c.id] = [2]int{wi, s}
	return c
}

// collect takes what worker wi's Machine reported.
func (w *world) collect(wi int) {
	wk := w.ws[wi]
	rd := wk.m.Ready()
	if len(rd.Copies) > 0 {
		for _, c := range rd.Copies {
			wire.DecodeFloat32s(c.Src, c.Dst)
		}
		clear(rd.Copies)
		rd.Copies = rd.Copies[:0]
		for s := range wk.m.Shards() {
			wk.m.Copied(s)
		}
		rd = wk.m.Ready()
	}
	for _, d := range rd.Done {
		tok := d.Tok.(string)
		if !wk.open[tok] {
			w.t.Fatalf("worker %d: %q finished twice (or never started)", wi, tok)
		}
		delete(wk.open, tok)
		if d.Err != nil {
			w.t.Fatalf("worker %d: %s: %v", wi, tok, d.Err)
		}
	}
	if rd.JoinErr != nil {
		w.t.Fatalf("worker %d: join: %v", wi, rd.JoinErr)
	}
	for _, e := range rd.Events {
		if e.Kind == wsm.EventConn && e.Conn == wsm.Lost {
			w.t.Fatalf("worker %d: shard %d lost: %v", wi, e.Shard, e.Err)
		}
	}
	wk.m.Clear()
}

// send: worker wi hands shard s's next message to the network.
func (w *world) send(wi, s int) bool {
	wk := w.ws[wi]
	out, ok := wk.m.Next(s)
	if !ok {
		return false
	}
	c := wk.conns[s]
	frame := append(append([]byte(nil), out.Head...), out.Body...)
	if out.Epoch != c.epoch {
		w.t.Fatalf("worker %d shard %d: message for epoch %d on epoch %d", wi, s, out.Epoch, c.epoch)
	}
	// A request is sent at most once per epoch.
	var m wire.Msg
	if err := wire.Decode(frame, nil, &m); err != nil {
		w.t.Fatalf("worker %d sent a bad message: %v", wi, err)
	}
	seqs := []uint64{m.Seq}
	if m.Type.IsList() {
		w.lists++
	}
	if m.Type.IsBatch() {
		es, err := wire.DecodeBatch(&m, nil, nil)
		if err != nil {
			w.t.Fatalf("worker %d sent a bad batch: %v", wi, err)
		}
		seqs = seqs[:0]
		for _, e := range es {
			seqs = append(seqs, e.Seq)
		}
	}
	if m.Type.IsRequest() || m.Type.IsBatch() {
		for _, q := range seqs {
			if c.sent[q] {
				w.t.Fatalf("worker %d shard %d: seq %d sent twice on epoch %d", wi, s, q, c.epoch)
			}
			c.sent[q] = true
		}
	}
	win, in := wk.m.Window(s), wk.m.InFlight(s)
	if in.Requests > 1 && (in.Requests > win.Requests || in.Bytes > win.Bytes || in.Messages > win.Messages) {
		w.t.Fatalf("worker %d shard %d: %+v in flight, window %+v", wi, s, in, win)
	}
	c.up = append(c.up, frame)
	wk.m.Written(s)
	w.collect(wi)
	return true
}

// toServer delivers the oldest message worker wi sent to shard s.
func (w *world) toServer(wi, s int) bool {
	c := w.ws[wi].conns[s]
	if len(c.up) == 0 {
		return false
	}
	frame := c.up[0]
	c.up = c.up[1:]
	if c.first {
		c.first = false
		if frame[3] != byte(wire.TypeHello) {
			w.t.Fatalf("worker %d shard %d epoch %d: the first message is a %v, not a Hello", wi, s, c.epoch, wire.Type(frame[3]))
		}
	}
	w.carry(s, w.jobs[s].Step(w.now, c.id, frame))
	return true
}

// carry delivers a job's Ready to the connections' down queues.
func (w *world) carry(s int, rd psm.Ready) {
	for i := range rd.Msgs {
		e := &rd.Msgs[i]
		own, ok := w.owner[e.To]
		if !ok {
			continue
		}
		c := w.ws[own[0]].conns[own[1]]
		if c.id != e.To {
			continue // an old connection: lost
		}
		frame := e.Append(nil)
		var m wire.Msg
		if err := wire.Decode(frame, nil, &m); err != nil {
			w.t.Fatal(err)
		}
		if m.Type == wire.TypeWelcome {
			c.welcome = true
		}
		if m.Type == wire.TypeError && m.Code == wire.CodeNotJoined {
			w.t.Fatalf("worker %d shard %d: the server read a request before the Welcome: %s", own[0], own[1], m.Payload)
		}
		c.down = append(c.down, frame)
	}
	for _, id := range rd.Close {
		if own, ok := w.owner[id]; ok && w.ws[own[0]].conns[own[1]].id == id {
			w.breakConn(own[0], own[1])
		}
	}
	_ = s
}

// toWorker delivers the oldest server message to worker wi from shard s.
func (w *world) toWorker(wi, s int) bool {
	c := w.ws[wi].conns[s]
	if len(c.down) == 0 {
		return false
	}
	frame := c.down[0]
	c.down = c.down[1:]
	w.ws[wi].m.Recv(s, c.epoch, frame)
	w.collect(wi)
	return true
}

// breakConn loses worker wi's connection to shard s with what is in
// flight on it; the worker's transport reconnects (a new epoch).
func (w *world) breakConn(wi, s int) {
	wk := w.ws[wi]
	old := wk.conns[s]
	w.carry(s, w.jobs[s].Disconnect(w.now, old.id))
	delete(w.owner, old.id)
	c := w.connect(wi, s, old.epoch+1)
	wk.conns[s] = c
	wk.m.Reconnected(s, c.epoch)
	w.collect(wi)
}

// restartJob replaces shard s's job by one restored from its snapshot, as
// a relay restart would: every connection to it is lost.
func (w *world) restartJob(s int) {
	snap, err := w.jobs[s].AppendSnapshot(nil)
	if err != nil {
		w.t.Fatal(err)
	}
	j, err := psm.Restore(psm.Config{Job: "f", Shard: s, Shards: len(w.jobs), Heartbeat: time.Hour, Timeout: 100 * time.Hour}, snap, w.now)
	if err != nil {
		w.t.Fatal(err)
	}
	w.jobs[s].Close()
	w.jobs[s] = j
	w.restart++
	for wi := range w.ws {
		w.breakConn(wi, s)
	}
}

// step does one thing that can progress; false if nothing could.
func (w *world) step() bool {
	for wi := range w.ws {
		for s := range w.jobs {
			if w.send(wi, s) || w.toServer(wi, s) || w.toWorker(wi, s) {
				return true
			}
		}
	}
	return false
}

func (w *world) run(script []byte) {
	for i := 0; i+2 < len(script); i += 3 {
		op, a, b := script[i], int(script[i+1]), int(script[i+2])
		wi, s := a%len(w.ws), b%len(w.jobs)
		wk := w.ws[wi]
		switch op % 16 {
		case 0, 1, 2:
			w.send(wi, s)
		case 3, 4, 5:
			w.toServer(wi, s)
		case 6, 7, 8:
			w.toWorker(wi, s)
		case 9:
			if b%4 == 0 {
				w.breakConn(wi, s)
			}
		case 10:
			w.now += time.Duration(1+b%50) * time.Millisecond
			for x := range w.ws {
				w.ws[x].m.Tick(w.now)
				w.collect(x)
			}
			for x, j := range w.jobs {
				w.carry(x, j.Tick(w.now))
			}
		case 11:
			w.push(wi, b%w.nkeys)
		case 12:
			w.list(wi, b%w.nkeys, true)
		case 13:
			if b%2 == 1 {
				w.list(wi, b%w.nkeys, false)
				break
			}
			k := b % w.nkeys
			tok := fmt.Sprintf("pull %d.%d", k, wk.rounds[k])
			if !wk.open[tok] && !wk.open["init "+fmt.Sprint(k)] {
				wk.open[tok] = true
				if err := wk.m.Pull(tok, wk.keys[k], wk.outs[k]); err != nil {
					w.t.Fatal(err)
				}
				w.collect(wi)
			}
		case 14:
			if b%16 == 0 && w.restart < 3 {
				w.restartJob(s)
			}
		default:
			w.step()
		}
	}
}

// value is what worker wi pushes to element e of key k in round r.
func value(wi, k, r, e int) float32 { return float32(1000*r + 100*wi + 10*k + e) }

func (w *world) push(wi, k int) {
	wk := w.ws[wi]
	if wk.open["init "+fmt.Sprint(k)] || wk.rounds[k] >= 6 {
		return
	}
	r := wk.rounds[k]
	v := make([]float32, w.keyLen[k])
	for e := range v {
		v[e] = value(wi, k, r, e)
	}
	tok := fmt.Sprintf("push %d.%d", k, r)
	wk.open[tok] = true
	wk.rounds[k]++
	if err := wk.m.Push(tok, wk.keys[k], wire.DTypeF32, v, len(v)); err != nil {
		w.t.Fatal(err)
	}
	w.collect(wi)
}

// list has worker wi push (or pull) up to 3 keys from k0 on in one list
// request: those that may join one now (Listable, on the first one's
// shard).
func (w *world) list(wi, k0 int, push bool) {
	wk := w.ws[wi]
	var keys []*wsm.Key
	var ks []int
	var vals []float32
	shard := -1
	for d := range 3 {
		k := (k0 + d) % w.nkeys
		if wk.open["init "+fmt.Sprint(k)] || push && wk.rounds[k] >= 6 || !wk.m.Listable(wk.keys[k]) ||
			shard >= 0 && wk.keys[k].ListShard() != shard || slices.Contains(ks, k) {
			continue
		}
		shard = wk.keys[k].ListShard()
		for e := range w.keyLen[k] {
			vals = append(vals, value(wi, k, wk.rounds[k], e))
		}
		keys, ks = append(keys, wk.keys[k]), append(ks, k)
	}
	if len(keys) == 0 {
		return
	}
	tok := fmt.Sprintf("pulllist %v", ks)
	if push {
		var rs []int
		for _, k := range ks {
			rs = append(rs, wk.rounds[k])
			wk.rounds[k]++
		}
		tok = fmt.Sprintf("pushlist %v.%v", ks, rs)
	}
	if wk.open[tok] {
		return
	}
	wk.open[tok] = true
	var err error
	if push {
		err = wk.m.PushList(tok, keys, vals)
	} else {
		err = wk.m.PullList(tok, keys, vals) // the values are checked by the final pulls
	}
	if err != nil {
		w.t.Fatal(err)
	}
	w.collect(wi)
}

// heal delivers everything, has every worker push every key to the same
// round, and checks the values.
func (w *world) heal() {
	drain := func() {
		for range 100_000 {
			if !w.step() {
				return
			}
		}
		w.t.Fatal("the network does not settle")
	}
	drain()
	// Inits must be done now.
	for wi, wk := range w.ws {
		for k := range w.nkeys {
			if wk.open["init "+fmt.Sprint(k)] {
				w.t.Fatalf("worker %d: init of key %d never finished", wi, k)
			}
		}
	}
	last := make([]int, w.nkeys)
	for _, wk := range w.ws {
		for k, r := range wk.rounds {
			last[k] = max(last[k], r, 1)
		}
	}
	for wi, wk := range w.ws {
		for k := range w.nkeys {
			for wk.rounds[k] < last[k] {
				w.push(wi, k)
				drain()
			}
		}
	}
	drain()
	for wi, wk := range w.ws {
		for k := range w.nkeys {
			tok := fmt.Sprintf("final pull %d", k)
			wk.open[tok] = true
			if err := wk.m.Pull(tok, wk.keys[k], wk.outs[k]); err != nil {
				w.t.Fatal(err)
			}
		}
		w.collect(wi)
	}
	drain()
	for wi, wk := range w.ws {
		if len(wk.open) > 0 {
			w.t.Fatalf("worker %d: operations never finished: %v", wi, wk.open)
		}
		for k := range w.nkeys {
			r := last[k] - 1
			for e, got := range wk.outs[k] {
				var want float32
				for x := range w.ws {
					want += value(x, k, r, e)
				}
				if got != want {
					w.t.Fatalf("worker %d: key %d element %d after round %d is %v, want %v (a push lost or applied twice)", wi, k, e, r, got, want)
				}
			}
		}
	}
}
