package psm

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore/internal/scripttest"
	"github.com/webkv/webkv/kvcore/updater"
	"github.com/webkv/webkv/kvcore/wire"
)

// Data-driven tests, in the style of etcd-raft's: testdata/*.txt are
// scripts of messages and ticks, each block followed by "----" and the
// exact output the Job must produce (kvcore/internal/scripttest runs them
// on cockroachdb/datadriven). Run with -rewrite to rewrite the expected
// outputs after reviewing a change.
//
// Commands (one or more per block; "at=<ms>" on any command sets the clock
// first, and "timer" on a command that steps the job prints when its
// Ready asks for the next Tick: "timer at=<ms>" or "timer none"):
//
//	config deadline=<ms> quorum=<n> frac=<f> min=<n> timeout=<ms> norescale shards=<n> shard=<i>
//	       token=<t> wtoken=<name>:<t>,... maxworkers=<n> maxkeys=<n> maxelems=<n> maxbytes=<n>
//	       maxreply=<n> keyname=<n> expiry=<ms> window=<n> windowbytes=<n> maxstring=<n>
//	       notes (print Ready.Notes: "note <kind> worker=.. rank=.. workers=..")
//	hello <conn> [id=<worker id>] [rkey=@<worker id>|<literal>] [want=<n>] [mode=async] [token=<t>] [attempt=<n>] [resume]
//	connect <conn> token=<t>      (a token presented at the upgrade: Job.Connect)
//	heard <conn>                  (bytes arrived: Job.Heard at the current clock)
//	budget <n>                    (a Budget of n bytes shared by the jobs of this script)
//	init <conn> seq=<n> key=<k> [name=<s>] [shape=2,3] vals=<v,v,...> [off=<n> total=<n>]
//	push|pushpull <conn> seq=<n> key=<k> round=<r> vals=<v,...> [ack=<n>] [dtype=2bit words=<hex,...> count=<n>]
//	pull <conn> seq=<n> key=<k>
//	rowpush <conn> seq=<n> key=<k> round=<r> rows=<r,...> vals=<v,...> off=<n> total=<n>
//	rowpull <conn> seq=<n> key=<k> rows=<r,...> count=<n> off=<n> total=<n>
//	pushes|pulls|pushpulls <conn> [ack=<n>] entries=<seq>:<key>:<round>[:<v/v/...>];...
//	pushlist <conn> seq=<n> [ack=<n>] keys=<key>:<round>:<v/v/...>;... [total=<n>] [str] [perkey]
//	pulllist <conn> seq=<n> [ack=<n>] keys=<key>;... total=<n> [str] [perkey]
//	init ... novalue count=<n>     (FlagNoValue: key and shape only)
//	barrier|leave|save <conn> seq=<n>
//	cmd <conn> seq=<n> head=<h> body=<text>
//	ping <conn>
//	raw <conn> hex=<bytes>
//	disconnect <conn>
//	restore                       (snapshot the job and restore it: a relay restart)
//	tick
//	usage                         (the job's budget use: Job.BudgetUsed, and the shared Budget's)
//	cache <worker id>             (the worker's answer cache: entries and bytes)
//	empty                         (Job.Empty)
//
// Outputs: "<conn> <type> seq=.. key=.. round=.. flags.. vals=.." per
// message (a Welcome also shows "key" when it carries a resume key and
// its window when advertised), "close <conn>" per closed connection,
// "joined <conn>" per accepted Hello, "persist" when the Ready asks for a
// checkpoint, "expired" when it says the job expired.
//
// Resume keys come from a fixed stream (Config.Rand), and the script
// remembers each worker's from its Welcome: rkey=@j/1 sends it.

func TestScripts(t *testing.T) {
	scripttest.Run(t, "testdata/*.txt", func(t *testing.T) func(*scripttest.Line) string {
		return newScriptEnv(t, nil).run
	})
}

type scriptEnv struct {
	t     *testing.T
	cfg   Config
	j     *Job
	now   time.Duration
	conns map[string]ConnID
	names map[ConnID]string
	keys  map[string]string // resume key by worker id, from Welcomes
	notes bool              // print Ready.Notes (config notes)
}

// newScriptEnv is the state of one script: a job made on first use, with
// the config the script's config lines set.
func newScriptEnv(t *testing.T, updaters updater.Loader) *scriptEnv {
	return &scriptEnv{t: t, conns: map[string]ConnID{}, names: map[ConnID]string{}, keys: map[string]string{},
		cfg: Config{Job: "j", Heartbeat: 100 * time.Millisecond, Timeout: time.Second, Rand: &countingReader{}, Updaters: updaters}}
}

// countingReader is a fixed, non-repeating byte stream for resume keys.
type countingReader struct{ n byte }

func (r *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		r.n++
		p[i] = r.n
	}
	return len(p), nil
}

func (e *scriptEnv) job() *Job {
	if e.j == nil {
		j, err := New(e.cfg)
		if err != nil {
			e.t.Fatal(err)
		}
		e.j = j
	}
	return e.j
}

func (e *scriptEnv) conn(name string) ConnID {
	if c, ok := e.conns[name]; ok {
		return c
	}
	c := ConnID(len(e.conns) + 1)
	e.conns[name], e.names[c] = c, name
	return c
}

func (e *scriptEnv) run(l *scripttest.Line) string {
	if l.Has("at") {
		e.now = time.Duration(l.Num("at")) * time.Millisecond
	}
	ms := func(k string) time.Duration { return time.Duration(l.Num(k)) * time.Millisecond }
	var rd Ready
	switch l.Cmd {
	case "config":
		c := &e.cfg
		if l.Has("deadline") {
			c.RoundDeadline = ms("deadline")
		}
		if l.Has("timeout") {
			c.Timeout = ms("timeout")
		}
		c.QuorumMin = l.Int("quorum")
		if l.Has("frac") {
			c.QuorumFrac = l.Float("frac")
		}
		c.MinWorkers = l.Int("min")
		c.NoRescale = l.Has("norescale")
		e.notes = l.Has("notes")
		if l.Has("shards") {
			c.Shards, c.Shard = l.Int("shards"), l.Int("shard")
		}
		c.Token = l.Str("token")
		if l.Has("wtoken") {
			c.WorkerTokens = map[string]string{}
			for _, p := range strings.Split(l.Str("wtoken"), ",") {
				name, tok, _ := strings.Cut(p, ":")
				c.WorkerTokens[name] = tok
			}
		}
		c.MaxWorkers, c.MaxKeys, c.MaxElems = l.Int("maxworkers"), l.Int("maxkeys"), l.Int("maxelems")
		c.MaxBytes, c.MaxReplyBytes, c.MaxKeyName = int64(l.Num("maxbytes")), l.Int("maxreply"), l.Int("keyname")
		c.IdleExpiry, c.Window, c.WindowBytes = ms("expiry"), l.Int("window"), int64(l.Num("windowbytes"))
		if l.Has("maxstring") {
			c.Limits = &wire.Limits{MaxString: l.Int("maxstring")}
		}
		return ""
	case "cache":
		w := e.job().workers[l.Word(0)]
		if w == nil {
			return "no worker " + l.Word(0) + "\n"
		}
		return fmt.Sprintf("cache %s: %d answers, %d bytes, seqs %v\n", l.Word(0), len(w.done), w.doneBytes, sortedSeqs(w.done))
	case "empty":
		return fmt.Sprintf("empty %v\n", e.job().Empty())
	case "budget":
		e.cfg.Budget = NewBudget(int64(l.WordNum(0)))
		return ""
	case "usage":
		s := fmt.Sprintf("job %d of %d bytes", e.job().BudgetUsed(), e.j.cfg.MaxBytes)
		if b := e.cfg.Budget; b != nil {
			s += fmt.Sprintf(", shared %d of %d", b.Used(), b.Max())
		}
		return s + "\n"
	case "connect":
		e.job().Connect(e.conn(l.Word(0)), l.Str("token"))
		return ""
	case "heard":
		e.job().Heard(e.now, e.conn(l.Word(0)))
		return ""
	case "tick":
		rd = e.job().Tick(e.now)
	case "disconnect":
		rd = e.job().Disconnect(e.now, e.conn(l.Word(0)))
	case "restore":
		// A relay restart: the job's snapshot restored into a new Job
		// (its connections are gone).
		snap, err := e.job().AppendSnapshot(nil)
		if err != nil {
			e.t.Fatal(err)
		}
		e.j.Close()
		if e.j, err = Restore(e.cfg, snap, e.now); err != nil {
			e.t.Fatal(err)
		}
		return fmt.Sprintf("restored: run %d, %d workers, %d keys\n", e.j.Run(), len(e.j.workers), len(e.j.keys))
	default:
		c := e.conn(l.Word(0))
		rd = e.job().Step(e.now, c, e.frame(l))
	}
	checkBudget(e.t, e.j)
	out := e.format(rd)
	if l.Has("timer") {
		if rd.Next == 0 {
			out += "timer none\n"
		} else {
			out += fmt.Sprintf("timer at=%d\n", rd.Next/time.Millisecond)
		}
	}
	return out
}

func (e *scriptEnv) frame(a *scripttest.Line) []byte {
	h := wire.Header{Seq: a.Num("seq"), Key: a.Num("key"), Round: a.Num("round"), Ack: a.Num("ack")}
	if name, ok := a.Get("name"); ok {
		h.Key = wire.StrKeyID(name)
		h.Flags |= wire.FlagStrKey
	}
	vals := a.Float32s("vals")
	data := func() {
		h.DType, h.Count, h.Total = wire.DTypeF32, uint32(len(vals)), uint32(len(vals))
		if a.Has("total") {
			h.Offset, h.Total = uint32(a.Num("off")), uint32(a.Num("total"))
		}
	}
	var meta []byte
	switch a.Cmd {
	case "hello":
		mode := wire.ModeSync
		if a.Str("mode") == "async" {
			mode = wire.ModeAsync
		}
		key := a.Str("rkey")
		if id, ok := strings.CutPrefix(key, "@"); ok {
			key = e.keys[id]
		}
		return wire.AppendHello(nil, &wire.Hello{Job: "j", Role: "worker", Token: a.Str("token"), WorkerID: a.Str("id"), Mode: mode,
			Want: uint32(a.Num("want")), Attempt: uint32(a.Num("attempt")), ResumeKey: key, Resume: a.Has("resume")})
	case "init":
		h.Type = wire.TypeInit
		data()
		if a.Has("novalue") {
			h.Flags |= wire.FlagNoValue
			h.DType, h.Count = wire.DTypeNone, uint32(a.Num("count"))
			if !a.Has("total") {
				h.Total = h.Count
			}
		}
		shape := []int64{int64(h.Total)}
		if a.Has("shape") {
			shape = a.Ints("shape")
		}
		meta = wire.AppendInitMeta(nil, &wire.InitMeta{Name: a.Str("name"), Shape: shape})
	case "push", "pushpull":
		h.Type = wire.TypePush
		if a.Cmd == "pushpull" {
			h.Type = wire.TypePushPull
		}
		data()
		if dt, ok := a.Get("dtype"); ok {
			h.DType = map[string]wire.DType{"2bit": wire.DType2Bit, "1bit": wire.DType1Bit}[dt]
			h.Count = uint32(a.Num("count"))
			h.Total = h.Count
			vals = a.Bits("words")
		}
	case "pull":
		h.Type = wire.TypePull
	case "rowpush", "rowpull":
		// rows=<r,...> [vals=...] [count=<n>] off=<n> total=<n> (rows.go)
		h.Type, h.DType, h.Count = wire.TypeRowPush, wire.DTypeF32, uint32(len(vals))
		if a.Cmd == "rowpull" {
			h.Type, h.DType, h.Count = wire.TypeRowPull, wire.DTypeNone, uint32(a.Num("count"))
		}
		h.Offset, h.Total = uint32(a.Num("off")), uint32(a.Num("total"))
		meta = wire.AppendRowIDs(meta, a.Uint32s("rows"))
	case "barrier":
		h.Type = wire.TypeBarrier
	case "leave":
		h.Type = wire.TypeLeave
	case "save":
		h.Type = wire.TypeSaveStates
	case "cmd":
		h.Type, h.Key = wire.TypeCommand, a.Num("head")
		meta = []byte(a.Str("body"))
	case "ping":
		h.Type = wire.TypePing
	case "pushes", "pulls", "pushpulls":
		return batchFrame(a)
	case "pushlist", "pulllist":
		return listFrame(a)
	case "raw":
		return a.Hex("hex")
	default:
		e.t.Fatalf("%s: unknown command %q", a.Pos, a.Cmd)
	}
	m := wire.Msg{Header: h, Payload: wire.AppendFloat32s(meta, vals)}
	return wire.Append(nil, &m)
}

func (e *scriptEnv) format(rd Ready) string {
	var b strings.Builder
	for _, m := range rd.Msgs {
		if m.Msg.Type == wire.TypeAnswers {
			e.formatAnswers(&b, m)
			continue
		}
		fmt.Fprintf(&b, "%s %v", e.names[m.To], m.Msg.Type)
		h := m.Msg.Header
		switch h.Type {
		case wire.TypeWelcome:
			w, err := wire.DecodeWelcome(m.Msg.Payload, nil)
			if err != nil {
				e.t.Fatal(err)
			}
			fmt.Fprintf(&b, " id=%s rank=%d workers=%d", w.WorkerID, w.Rank, w.NumWorkers)
			if w.ResumeKey != "" {
				if old, ok := e.keys[w.WorkerID]; ok && old != w.ResumeKey {
					e.t.Errorf("worker %s: resume key changed from %s to %s", w.WorkerID, old, w.ResumeKey)
				}
				e.keys[w.WorkerID] = w.ResumeKey
				b.WriteString(" key")
			}
			if w.Window != 0 || w.WindowBytes != 0 {
				fmt.Fprintf(&b, " window=%d/%d", w.Window, w.WindowBytes)
			}
			b.WriteString("\n")
			continue
		case wire.TypeError:
			fmt.Fprintf(&b, " seq=%d %v: %s\n", h.Seq, h.Code, m.Msg.Payload)
			continue
		}
		if wire.IsMembers(&m.Msg) {
			ranks, err := wire.DecodeMembers(&m.Msg, nil)
			if err != nil {
				e.t.Fatal(err)
			}
			fmt.Fprintf(&b, " members=%v\n", ranks)
			continue
		}
		fmt.Fprintf(&b, " seq=%d", h.Seq)
		if h.Type == wire.TypeAck {
			fmt.Fprintf(&b, " key=%d round=%d", int64(h.Key), h.Round)
			if h.Count != 0 && h.DType == wire.DTypeNone {
				fmt.Fprintf(&b, " count=%d", h.Count)
			}
		}
		for _, f := range []struct {
			bit  uint16
			name string
		}{{wire.FlagLate, "late"}, {wire.FlagDup, "dup"}, {wire.FlagRescaled, "rescaled"}, {wire.FlagList, "list"}} {
			if h.Flags&f.bit != 0 {
				b.WriteString(" " + f.name)
			}
		}
		if h.DType == wire.DTypeF32 {
			fmt.Fprintf(&b, " vals=%s", scripttest.FormatFloat32s(wire.Float32View(m.Msg.Data(), nil)))
		}
		if h.Type == wire.TypeAck && h.Flags&wire.FlagList != 0 && len(m.Msg.Payload) > 0 && h.DType == wire.DTypeNone {
			formatListAnswer(&b, &m.Msg)
		} else if h.Type == wire.TypeAck && len(m.Msg.Payload) > 0 && h.DType == wire.DTypeNone {
			st, err := wire.DecodeStates(m.Msg.Payload, nil)
			if err == nil {
				fmt.Fprintf(&b, " states(numupdate=%d keys=%d)", st.NumUpdate, len(st.Keys))
				for _, k := range st.Keys {
					fmt.Fprintf(&b, " [key=%d t=%d states=%v]", int64(k.Key), k.T, k.States)
				}
			}
		}
		b.WriteString("\n")
	}
	for _, c := range rd.Close {
		fmt.Fprintf(&b, "close %s\n", e.names[c])
	}
	for _, c := range rd.Joined {
		fmt.Fprintf(&b, "joined %s\n", e.names[c])
	}
	if rd.Persist {
		b.WriteString("persist\n")
	}
	if rd.Expired {
		b.WriteString("expired\n")
	}
	if e.notes {
		for _, n := range rd.Notes {
			fmt.Fprintf(&b, "note %v worker=%s rank=%d workers=%d", n.Kind, n.Worker, n.Rank, n.Workers)
			if n.Why != "" {
				fmt.Fprintf(&b, " why=%q", n.Why)
			}
			if n.Kind == NoteRun {
				fmt.Fprintf(&b, " run=%d", n.Run)
			}
			if n.Kind == NoteDeadline {
				fmt.Fprintf(&b, " key=%s round=%d pushed=%d missing=%v", n.Key, n.Round, n.Pushed, n.Missing)
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}
