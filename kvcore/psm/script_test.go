package psm

import (
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore/wire"
)

// Data-driven tests, in the style of etcd-raft's: testdata/*.txt are
// scripts of messages and ticks, each followed by "----" and the exact
// output the Job must produce. Run with -update to rewrite the expected
// outputs after reviewing a change.
//
// Commands (one per block; "at=<ms>" on any command sets the clock first):
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
//	pushlist <conn> seq=<n> [ack=<n>] keys=<key>:<round>:<v/v/...>;... [total=<n>] [str]
//	pulllist <conn> seq=<n> [ack=<n>] keys=<key>;... total=<n> [str]
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

var update = flag.Bool("update", false, "rewrite testdata expected outputs")

func TestScripts(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no scripts in testdata")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { runScript(t, f) })
	}
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

// countingReader is a fixed, non-repeating byte stream for resume keys.
type countingReader struct{ n byte }

func (r *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		r.n++
		p[i] = r.n
	}
	return len(p), nil
}

func runScript(t *testing.T, path string) {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := &scriptEnv{t: t, conns: map[string]ConnID{}, names: map[ConnID]string{}, keys: map[string]string{},
		cfg: Config{Job: "j", Heartbeat: 100 * time.Millisecond, Timeout: time.Second, Rand: &countingReader{}}}
	var out strings.Builder
	blocks := strings.Split(strings.TrimRight(string(raw), "\n")+"\n", "\n\n")
	failed := false
	for _, blk := range blocks {
		blk = strings.Trim(blk, "\n")
		if blk == "" {
			continue
		}
		cmd, want, _ := strings.Cut(blk, "\n----")
		want = strings.Trim(want, "\n")
		var got string
		for _, line := range strings.Split(cmd, "\n") {
			if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
				continue
			}
			got += env.run(line)
		}
		got = strings.TrimRight(got, "\n")
		if got != want && !*update {
			t.Errorf("%s:\n%s\n---- got:\n%s\n---- want:\n%s", path, cmd, got, want)
			failed = true
		}
		out.WriteString(cmd + "\n----\n")
		if got != "" {
			out.WriteString(got + "\n")
		}
		out.WriteString("\n")
	}
	if *update && !failed {
		os.WriteFile(path, []byte(out.String()), 0o644)
	}
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

func parseArgs(fields []string) map[string]string {
	m := map[string]string{}
	for _, f := range fields {
		k, v, _ := strings.Cut(f, "=")
		m[k] = v
	}
	return m
}

func num(m map[string]string, k string) uint64 {
	v, ok := m[k]
	if !ok {
		return 0
	}
	if i, err := strconv.ParseInt(v, 10, 64); err == nil {
		return uint64(i)
	}
	panic("bad number " + k + "=" + v)
}

func floats(s string) []float32 {
	if s == "" {
		return nil
	}
	var r []float32
	for _, x := range strings.Split(s, ",") {
		f, err := strconv.ParseFloat(x, 32)
		if err != nil {
			panic("bad float " + x)
		}
		r = append(r, float32(f))
	}
	return r
}

func (e *scriptEnv) run(line string) string {
	fs := strings.Fields(line)
	args := parseArgs(fs[1:])
	if at, ok := args["at"]; ok {
		ms, _ := strconv.Atoi(at)
		e.now = time.Duration(ms) * time.Millisecond
	}
	var rd Ready
	switch fs[0] {
	case "config":
		c := &e.cfg
		if v, ok := args["deadline"]; ok {
			ms, _ := strconv.Atoi(v)
			c.RoundDeadline = time.Duration(ms) * time.Millisecond
		}
		if v, ok := args["timeout"]; ok {
			ms, _ := strconv.Atoi(v)
			c.Timeout = time.Duration(ms) * time.Millisecond
		}
		c.QuorumMin = int(num(args, "quorum"))
		if v, ok := args["frac"]; ok {
			c.QuorumFrac, _ = strconv.ParseFloat(v, 64)
		}
		c.MinWorkers = int(num(args, "min"))
		_, c.NoRescale = args["norescale"]
		e.notes = has(args, "notes")
		if _, ok := args["shards"]; ok {
			c.Shards, c.Shard = int(num(args, "shards")), int(num(args, "shard"))
		}
		c.Token = args["token"]
		if v, ok := args["wtoken"]; ok {
			c.WorkerTokens = map[string]string{}
			for _, p := range strings.Split(v, ",") {
				name, tok, _ := strings.Cut(p, ":")
				c.WorkerTokens[name] = tok
			}
		}
		ms := func(k string) time.Duration { return time.Duration(num(args, k)) * time.Millisecond }
		c.MaxWorkers, c.MaxKeys, c.MaxElems = int(num(args, "maxworkers")), int(num(args, "maxkeys")), int(num(args, "maxelems"))
		c.MaxBytes, c.MaxReplyBytes, c.MaxKeyName = int64(num(args, "maxbytes")), int(num(args, "maxreply")), int(num(args, "keyname"))
		c.IdleExpiry, c.Window, c.WindowBytes = ms("expiry"), int(num(args, "window")), int64(num(args, "windowbytes"))
		if _, ok := args["maxstring"]; ok {
			c.Limits = &wire.Limits{MaxString: int(num(args, "maxstring"))}
		}
		return ""
	case "cache":
		w := e.job().workers[fs[1]]
		if w == nil {
			return "no worker " + fs[1] + "\n"
		}
		return fmt.Sprintf("cache %s: %d answers, %d bytes, seqs %v\n", fs[1], len(w.done), w.doneBytes, sortedSeqs(w.done))
	case "empty":
		return fmt.Sprintf("empty %v\n", e.job().Empty())
	case "budget":
		e.cfg.Budget = NewBudget(int64(num(map[string]string{"n": fs[1]}, "n")))
		return ""
	case "usage":
		s := fmt.Sprintf("job %d of %d bytes", e.job().BudgetUsed(), e.j.cfg.MaxBytes)
		if b := e.cfg.Budget; b != nil {
			s += fmt.Sprintf(", shared %d of %d", b.Used(), b.Max())
		}
		return s + "\n"
	case "connect":
		e.job().Connect(e.conn(fs[1]), args["token"])
		return ""
	case "heard":
		e.job().Heard(e.now, e.conn(fs[1]))
		return ""
	case "tick":
		rd = e.job().Tick(e.now)
	case "disconnect":
		rd = e.job().Disconnect(e.now, e.conn(fs[1]))
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
		c := e.conn(fs[1])
		rd = e.job().Step(e.now, c, e.frame(fs[0], args))
	}
	checkBudget(e.t, e.j)
	return e.format(rd)
}

func (e *scriptEnv) frame(cmd string, a map[string]string) []byte {
	h := wire.Header{Seq: num(a, "seq"), Key: num(a, "key"), Round: num(a, "round"), Ack: num(a, "ack")}
	if name, ok := a["name"]; ok {
		h.Key = wire.StrKeyID(name)
		h.Flags |= wire.FlagStrKey
	}
	vals := floats(a["vals"])
	data := func() {
		h.DType, h.Count, h.Total = wire.DTypeF32, uint32(len(vals)), uint32(len(vals))
		if _, ok := a["total"]; ok {
			h.Offset, h.Total = uint32(num(a, "off")), uint32(num(a, "total"))
		}
	}
	var meta []byte
	switch cmd {
	case "hello":
		mode := wire.ModeSync
		if a["mode"] == "async" {
			mode = wire.ModeAsync
		}
		key := a["rkey"]
		if id, ok := strings.CutPrefix(key, "@"); ok {
			key = e.keys[id]
		}
		return wire.AppendHello(nil, &wire.Hello{Job: "j", Role: "worker", Token: a["token"], WorkerID: a["id"], Mode: mode,
			Want: uint32(num(a, "want")), Attempt: uint32(num(a, "attempt")), ResumeKey: key, Resume: has(a, "resume")})
	case "init":
		h.Type = wire.TypeInit
		data()
		if _, ok := a["novalue"]; ok {
			h.Flags |= wire.FlagNoValue
			h.DType, h.Count = wire.DTypeNone, uint32(num(a, "count"))
			if _, ok := a["total"]; !ok {
				h.Total = h.Count
			}
		}
		shape := []int64{int64(h.Total)}
		if s, ok := a["shape"]; ok {
			shape = nil
			for _, d := range strings.Split(s, ",") {
				v, _ := strconv.Atoi(d)
				shape = append(shape, int64(v))
			}
		}
		meta = wire.AppendInitMeta(nil, &wire.InitMeta{Name: a["name"], Shape: shape})
	case "push", "pushpull":
		h.Type = wire.TypePush
		if cmd == "pushpull" {
			h.Type = wire.TypePushPull
		}
		data()
		if dt, ok := a["dtype"]; ok {
			h.DType = map[string]wire.DType{"2bit": wire.DType2Bit, "1bit": wire.DType1Bit}[dt]
			h.Count = uint32(num(a, "count"))
			h.Total = h.Count
			vals = nil
			for _, w := range strings.Split(a["words"], ",") {
				u, _ := strconv.ParseUint(w, 16, 32)
				vals = append(vals, math.Float32frombits(uint32(u)))
			}
		}
	case "pull":
		h.Type = wire.TypePull
	case "rowpush", "rowpull":
		// rows=<r,...> [vals=...] [count=<n>] off=<n> total=<n> (rows.go)
		h.Type, h.DType, h.Count = wire.TypeRowPush, wire.DTypeF32, uint32(len(vals))
		if cmd == "rowpull" {
			h.Type, h.DType, h.Count = wire.TypeRowPull, wire.DTypeNone, uint32(num(a, "count"))
		}
		h.Offset, h.Total = uint32(num(a, "off")), uint32(num(a, "total"))
		if a["rows"] != "" {
			for _, r := range strings.Split(a["rows"], ",") {
				v, _ := strconv.ParseUint(r, 10, 32)
				meta = wire.AppendRowIDs(meta, []uint32{uint32(v)})
			}
		}
	case "barrier":
		h.Type = wire.TypeBarrier
	case "leave":
		h.Type = wire.TypeLeave
	case "save":
		h.Type = wire.TypeSaveStates
	case "cmd":
		h.Type, h.Key = wire.TypeCommand, num(a, "head")
		meta = []byte(a["body"])
	case "ping":
		h.Type = wire.TypePing
	case "pushes", "pulls", "pushpulls":
		return batchFrame(cmd, a)
	case "pushlist", "pulllist":
		return listFrame(cmd, a)
	case "raw":
		var b []byte
		fmt.Sscanf(a["hex"], "%x", &b)
		return b
	default:
		e.t.Fatalf("unknown command %q", cmd)
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
			v := wire.Float32View(m.Msg.Data(), nil)
			s := make([]string, len(v))
			for i, x := range v {
				s[i] = strconv.FormatFloat(float64(x), 'g', -1, 32)
			}
			fmt.Fprintf(&b, " vals=%s", strings.Join(s, ","))
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

func has(a map[string]string, k string) bool {
	_, ok := a[k]
	return ok
}
