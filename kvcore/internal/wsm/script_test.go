package wsm

import (
	"encoding/binary"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore/transport"
	"github.com/webkv/webkv/kvcore/wire"
)

// Data-driven tests in the style of etcd-raft's (and kvcore/psm's):
// testdata/*.txt are scripts of inputs, each block followed by "----" and
// the exact output the Machine must produce. Run with -update to rewrite
// the expected outputs after reviewing a change.
//
// Commands (one or more per block):
//
//	config shards=<n> mode=sync|async workers=<n> window=<reqs>,<bytes>[,<msgs>] batch=<entry>,<bytes>,<entries> bound=<n>
//	start
//	send [<shard>]                 drain Next/Written (all shards, in order) and print each message
//	send1 <shard>                  one Next without Written (a write in progress)
//	written <shard>
//	recv <shard> welcome id=<s> rank=<r> workers=<n> [hb=<ms>] [key=<resume key>] [window=<reqs>,<bytes>]
//	recv <shard> ack seq=<n> [round=<r>] [count=<n>] [late] [rescaled] [vals=<v,...>]
//	recv <shard> error seq=<n> code=<code, e.g. need-value> [text=<s>]
//	recv <shard> answers <entry>;<entry>;...   (entry: "ack seq=.. round=.. vals=1/2" or "error seq=.. code=..")
//	recv <shard> members ranks=<r,...>
//	recv <shard> pong|raw hex=<bytes>
//	reconnect <shard> <epoch>
//	lost <shard>
//	tick <ms>
//	init <tok> key=<k> [name=<s>] [shape=<d,d>] vals=<v,...>
//	push|pushpull <tok> key=<k> vals=<v,...> [dtype=2bit|1bit words=<hex,...> n=<n>]
//	pull <tok> key=<k>
//	rowpush <tok> key=<k> rows=<r,...> width=<w> vals=<v,...>
//	rowpull <tok> key=<k> rows=<r,...> width=<w>
//	barrier|save|leave <tok>
//	cmd <tok> head=<h> body=<text>
//	cancel <tok>
//	close
//
// Outputs: "<shard>@<epoch> <message>" per message sent; "done <tok>
// [err=...] [vals=...]" per finished operation; "event ..." per event;
// "joined" / "join error: ..." when joining ends.

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
	t    *testing.T
	cfg  Config
	m    *Machine
	outs map[string][]float32
	keys map[string]*Key
}

func runScript(t *testing.T, path string) {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := &scriptEnv{t: t, outs: map[string][]float32{}, keys: map[string]*Key{},
		cfg: Config{Shards: 1, Mode: wire.ModeSync, Join: transport.Join{Job: "j"}}}
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

func args(fields []string) map[string]string {
	m := map[string]string{}
	for _, f := range fields {
		k, v, _ := strings.Cut(f, "=")
		m[k] = v
	}
	return m
}

func num(a map[string]string, k string) uint64 {
	v, ok := a[k]
	if !ok {
		return 0
	}
	i, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		panic("bad number " + k + "=" + v)
	}
	return uint64(i)
}

func floats(s, sep string) []float32 {
	if s == "" {
		return nil
	}
	var r []float32
	for _, x := range strings.Split(s, sep) {
		f, err := strconv.ParseFloat(x, 32)
		if err != nil {
			panic("bad float " + x)
		}
		r = append(r, float32(f))
	}
	return r
}

func fmtFloats(v []float32) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatFloat(float64(x), 'g', -1, 32)
	}
	return strings.Join(s, ",")
}

func (e *scriptEnv) machine() *Machine {
	if e.m == nil {
		m, err := New(e.cfg)
		if err != nil {
			e.t.Fatal(err)
		}
		e.m = m
	}
	return e.m
}

func (e *scriptEnv) run(line string) string {
	fs := strings.Fields(line)
	a := args(fs[1:])
	var b strings.Builder
	callErr := func(err error) {
		if err != nil {
			fmt.Fprintf(&b, "call error: %v\n", err)
		}
	}
	switch fs[0] {
	case "config":
		c := &e.cfg
		if v, ok := a["shards"]; ok {
			c.Shards, _ = strconv.Atoi(v)
		}
		if a["mode"] == "async" {
			c.Mode = wire.ModeAsync
		}
		c.Join.Workers = int(num(a, "workers"))
		c.Join.BigArrayBound = int(num(a, "bound"))
		if v, ok := a["window"]; ok {
			f := strings.Split(v, ",")
			c.Window.Requests, _ = strconv.Atoi(f[0])
			c.Window.Bytes, _ = strconv.Atoi(f[1])
			if len(f) > 2 {
				c.Window.Messages, _ = strconv.Atoi(f[2])
			}
		}
		if v, ok := a["batch"]; ok {
			f := strings.Split(v, ",")
			c.BatchEntry, _ = strconv.Atoi(f[0])
			c.BatchBytes, _ = strconv.Atoi(f[1])
			c.BatchEntries, _ = strconv.Atoi(f[2])
		}
		return ""
	case "start":
		e.machine().Start()
	case "send":
		m := e.machine()
		shards := []int{}
		if len(fs) > 1 {
			s, _ := strconv.Atoi(fs[1])
			shards = append(shards, s)
		} else {
			for i := range m.Shards() {
				shards = append(shards, i)
			}
		}
		for _, s := range shards {
			for {
				out, ok := m.Next(s)
				if !ok {
					break
				}
				b.WriteString(e.formatOut(out))
				m.Written(s)
			}
		}
	case "send1":
		s, _ := strconv.Atoi(fs[1])
		if out, ok := e.machine().Next(s); ok {
			b.WriteString(e.formatOut(out))
		}
	case "written":
		s, _ := strconv.Atoi(fs[1])
		e.machine().Written(s)
	case "recv":
		s, _ := strconv.Atoi(fs[1])
		m := e.machine()
		m.Recv(s, m.Epoch(s), e.frame(fs[2], fs[3:]))
	case "reconnect":
		s, _ := strconv.Atoi(fs[1])
		ep, _ := strconv.Atoi(fs[2])
		e.machine().Reconnected(s, transport.Epoch(ep))
	case "lost":
		s, _ := strconv.Atoi(fs[1])
		e.machine().Lost(s, fmt.Errorf("gave up"))
	case "tick":
		ms, _ := strconv.Atoi(fs[1])
		e.machine().Tick(time.Duration(ms) * time.Millisecond)
	case "init":
		vals := floats(a["vals"], ",")
		shape := []int64{int64(len(vals))}
		if s, ok := a["shape"]; ok {
			shape = nil
			for _, d := range strings.Split(s, ",") {
				v, _ := strconv.Atoi(d)
				shape = append(shape, int64(v))
			}
		}
		spec := KeySpec{ID: num(a, "key"), Shape: shape, N: len(vals)}
		if name, ok := a["name"]; ok {
			spec.ID, spec.Str, spec.Name = wire.StrKeyID(name), true, name
		}
		k, err := e.machine().InitKey(fs[1], spec, vals)
		callErr(err)
		if k != nil {
			e.keys[keyName(a)] = k
		}
	case "push", "pushpull":
		k := e.keys[keyName(a)]
		dt, data := wire.DTypeF32, floats(a["vals"], ",")
		n := len(data)
		if d, ok := a["dtype"]; ok {
			dt = map[string]wire.DType{"2bit": wire.DType2Bit, "1bit": wire.DType1Bit}[d]
			n = int(num(a, "n"))
			data = nil
			for _, w := range strings.Split(a["words"], ",") {
				u, _ := strconv.ParseUint(w, 16, 32)
				data = append(data, math.Float32frombits(uint32(u)))
			}
		}
		if fs[0] == "push" {
			callErr(e.machine().Push(fs[1], k, dt, data, n))
		} else {
			out := make([]float32, k.N())
			e.outs[fs[1]] = out
			callErr(e.machine().PushPull(fs[1], k, dt, data, n, out))
		}
	case "pull":
		k := e.keys[keyName(a)]
		out := make([]float32, k.N())
		e.outs[fs[1]] = out
		callErr(e.machine().Pull(fs[1], k, out))
	case "rowpush", "rowpull":
		// rows=<r,...> width=<w> [vals=<v,...>] (rows.go)
		k := e.keys[keyName(a)]
		var rows []uint32
		if a["rows"] != "" {
			for _, r := range strings.Split(a["rows"], ",") {
				v, _ := strconv.ParseUint(r, 10, 32)
				rows = append(rows, uint32(v))
			}
		}
		width := int(num(a, "width"))
		if fs[0] == "rowpush" {
			callErr(e.machine().RowPush(fs[1], k, rows, width, floats(a["vals"], ",")))
		} else {
			out := make([]float32, len(rows)*width)
			e.outs[fs[1]] = out
			callErr(e.machine().RowPull(fs[1], k, rows, width, out))
		}
	case "barrier":
		callErr(e.machine().Barrier(fs[1]))
	case "save":
		callErr(e.machine().SaveStates(fs[1]))
	case "leave":
		callErr(e.machine().Leave(fs[1]))
	case "cmd":
		callErr(e.machine().Command(fs[1], int(num(a, "head")), []byte(a["body"])))
	case "cancel":
		e.machine().Cancel(fs[1])
	case "close":
		e.machine().Close()
	default:
		e.t.Fatalf("unknown command %q", fs[0])
	}
	b.WriteString(e.ready())
	return b.String()
}

func keyName(a map[string]string) string {
	if n, ok := a["name"]; ok {
		return "s:" + n
	}
	return "i:" + a["key"]
}

// ready prints and clears what the Machine reported.
func (e *scriptEnv) ready() string {
	m := e.machine()
	rd := m.Ready()
	if len(rd.Copies) > 0 {
		for _, c := range rd.Copies {
			wire.DecodeFloat32s(c.Src, c.Dst)
		}
		clear(rd.Copies)
		rd.Copies = rd.Copies[:0]
		for s := range m.Shards() {
			m.Copied(s)
		}
		rd = m.Ready()
	}
	var b strings.Builder
	for _, d := range rd.Done {
		fmt.Fprintf(&b, "done %v", d.Tok)
		if d.Err != nil {
			fmt.Fprintf(&b, " err=%v", d.Err)
		}
		if out, ok := e.outs[d.Tok.(string)]; ok && d.Err == nil {
			fmt.Fprintf(&b, " vals=%s", fmtFloats(out))
		}
		if d.Workers != 0 {
			fmt.Fprintf(&b, " workers=%d", d.Workers)
		}
		for i, st := range d.States {
			if st != nil {
				fmt.Fprintf(&b, " states[%d]=(numupdate=%d keys=%d)", i, st.NumUpdate, len(st.Keys))
			}
		}
		b.WriteString("\n")
	}
	for _, ev := range rd.Events {
		switch ev.Kind {
		case EventRound:
			fmt.Fprintf(&b, "event round key=%d round=%d", int64(ev.Key.ID()), ev.Round)
			if ev.Late {
				b.WriteString(" late")
			}
			if ev.Rescaled {
				b.WriteString(" rescaled")
			}
			b.WriteString("\n")
		case EventMembers:
			fmt.Fprintf(&b, "event members %v rank=%d workers=%d\n", ev.Members, ev.Rank, ev.Workers)
		case EventConn:
			st := map[ConnState]string{Connected: "connected", Reconnected: "reconnected", Lost: "lost"}[ev.Conn]
			fmt.Fprintf(&b, "event conn shard=%d %s", ev.Shard, st)
			if ev.Conn != Lost {
				fmt.Fprintf(&b, " rank=%d workers=%d", ev.Rank, ev.Workers)
			}
			if ev.Err != nil {
				fmt.Fprintf(&b, " err=%v", ev.Err)
			}
			b.WriteString("\n")
		}
	}
	if rd.Joined {
		b.WriteString("joined\n")
	}
	if rd.JoinErr != nil {
		fmt.Fprintf(&b, "join error: %v\n", rd.JoinErr)
	}
	m.Clear()
	return b.String()
}

// formatOut prints an outgoing message.
func (e *scriptEnv) formatOut(o Outgoing) string {
	frame := append(append([]byte(nil), o.Head...), o.Body...)
	var msg wire.Msg
	if err := wire.Decode(frame, nil, &msg); err != nil {
		e.t.Fatalf("outgoing message does not decode: %v", err)
	}
	p := fmt.Sprintf("%d@%d ", o.Shard, o.Epoch)
	switch msg.Type {
	case wire.TypeHello:
		h, err := wire.DecodeHello(msg.Payload, nil)
		if err != nil {
			e.t.Fatal(err)
		}
		key := ""
		if h.ResumeKey != "" {
			key = " key=" + h.ResumeKey
		}
		return p + fmt.Sprintf("hello id=%q hint=%d attempt=%d want=%d mode=%v%s\n", h.WorkerID, h.RankHint, h.Attempt, h.Want, h.Mode, key)
	case wire.TypePing:
		return p + "ping\n"
	}
	if msg.Type.IsBatch() {
		es, err := wire.DecodeBatch(&msg, nil, nil)
		if err != nil {
			e.t.Fatalf("outgoing batch: %v", err)
		}
		s := p + fmt.Sprintf("%v n=%d ack=%d\n", msg.Type, len(es), msg.Ack)
		for _, x := range es {
			s += "  " + formatReq(&x, false) + "\n"
		}
		return s
	}
	return p + formatReq(&msg, true) + "\n"
}

func formatReq(m *wire.Msg, withAck bool) string {
	s := fmt.Sprintf("%v seq=%d", m.Type, m.Seq)
	if withAck {
		s += fmt.Sprintf(" ack=%d", m.Ack)
	}
	switch m.Type {
	case wire.TypeCommand:
		return s + fmt.Sprintf(" head=%d body=%s", m.Key, m.Payload)
	case wire.TypeBarrier, wire.TypeSaveStates, wire.TypeLeave, wire.TypeLoadStates:
		return s
	}
	s += fmt.Sprintf(" key=%d", int64(m.Key))
	if m.Type == wire.TypePush || m.Type == wire.TypePushPull || m.Type == wire.TypeRowPush {
		s += fmt.Sprintf(" round=%d", m.Round)
	}
	if m.Type == wire.TypeRowPush || m.Type == wire.TypeRowPull {
		var ids []string
		for i := 0; i+4 <= len(m.Meta()); i += 4 {
			ids = append(ids, strconv.FormatUint(uint64(binary.LittleEndian.Uint32(m.Meta()[i:])), 10))
		}
		s += " rows=[" + strings.Join(ids, ",") + "]"
		if m.Type == wire.TypeRowPull {
			s += fmt.Sprintf(" count=%d", m.Count)
		}
	}
	if m.Type == wire.TypePull {
		if m.Offset != 0 {
			s += fmt.Sprintf(" from=%d", m.Offset)
		}
	} else if m.Offset != 0 || m.Count != m.Total {
		s += fmt.Sprintf(" part=%d+%d/%d", m.Offset, m.Count, m.Total)
	}
	if m.Flags&wire.FlagStrKey != 0 {
		s += " str"
	}
	if m.Flags&wire.FlagNoValue != 0 {
		s += fmt.Sprintf(" novalue count=%d", m.Count)
	}
	switch m.DType {
	case wire.DTypeF32:
		s += " vals=" + fmtFloats(wire.Float32View(m.Data(), nil))
	case wire.DType2Bit, wire.DType1Bit:
		w := wire.Float32View(m.Data(), nil)
		hex := make([]string, len(w))
		for i, x := range w {
			hex[i] = fmt.Sprintf("%x", math.Float32bits(x))
		}
		s += fmt.Sprintf(" %v words=%s", m.DType, strings.Join(hex, ","))
	}
	return s
}

// frame builds a server message for recv.
func (e *scriptEnv) frame(kind string, fs []string) []byte {
	if kind == "answers" {
		var b wire.AnswersBuilder
		for _, ent := range strings.Split(strings.Join(fs, " "), ";") {
			f := strings.Fields(ent)
			m := e.reply(f[0], args(f[1:]), "/")
			b.Add(&m)
		}
		m, _ := b.Append(nil)
		return wire.Append(nil, &m)
	}
	a := args(fs)
	switch kind {
	case "welcome":
		w := &wire.Welcome{WorkerID: a["id"], Rank: uint32(num(a, "rank")), ResumeKey: a["key"],
			NumWorkers: uint32(num(a, "workers")), Heartbeat: uint32(num(a, "hb")), Timeout: 10000, Mode: e.cfg.Mode}
		if v, ok := a["window"]; ok {
			r, b, _ := strings.Cut(v, ",")
			n, _ := strconv.Atoi(r)
			by, _ := strconv.Atoi(b)
			w.Window, w.WindowBytes = uint32(n), uint64(by)
		}
		return wire.AppendWelcome(nil, w)
	case "members":
		var ranks []int
		for _, r := range strings.Split(a["ranks"], ",") {
			v, _ := strconv.Atoi(r)
			ranks = append(ranks, v)
		}
		sort.Ints(ranks)
		return wire.AppendMembers(nil, ranks)
	case "pong":
		return wire.AppendHeader(nil, &wire.Header{Type: wire.TypePong})
	case "raw":
		var b []byte
		fmt.Sscanf(a["hex"], "%x", &b)
		return b
	}
	m := e.reply(kind, a, ",")
	return wire.Append(nil, &m)
}

func (e *scriptEnv) reply(kind string, a map[string]string, sep string) wire.Msg {
	h := wire.Header{Seq: num(a, "seq"), Round: num(a, "round"), Count: uint32(num(a, "count")), Key: num(a, "key")}
	var payload []byte
	switch kind {
	case "ack":
		h.Type = wire.TypeAck
		if _, ok := a["late"]; ok {
			h.Flags |= wire.FlagLate
		}
		if _, ok := a["rescaled"]; ok {
			h.Flags |= wire.FlagRescaled
		}
		if v, ok := a["vals"]; ok {
			vals := floats(v, sep)
			h.DType, h.Count = wire.DTypeF32, uint32(len(vals))
			h.Offset, h.Total = uint32(num(a, "off")), uint32(len(vals))+uint32(num(a, "off"))
			if t, ok := a["total"]; ok {
				n, _ := strconv.Atoi(t)
				h.Total = uint32(n)
			}
			payload = wire.AppendFloat32s(nil, vals)
		}
		if _, ok := a["states"]; ok {
			payload = wire.AppendStates(nil, &wire.States{NumUpdate: 3})
		}
	case "error":
		h.Type, h.Code = wire.TypeError, codeNamed(e.t, a["code"])
		payload = []byte(a["text"])
	default:
		e.t.Fatalf("unknown message %q", kind)
	}
	h.PLen = uint32(len(payload))
	return wire.Msg{Header: h, Payload: payload}
}

func codeNamed(t *testing.T, name string) wire.Code {
	name = strings.ReplaceAll(name, "-", " ")
	for c := wire.Code(0); c < 64; c++ {
		if c.String() == name {
			return c
		}
	}
	t.Fatalf("unknown code %q", name)
	return 0
}
