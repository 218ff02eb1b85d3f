package wsm

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore/internal/scripttest"
	"github.com/webkv/webkv/kvcore/transport"
	"github.com/webkv/webkv/kvcore/wire"
)

// Data-driven tests in the style of etcd-raft's (and kvcore/psm's):
// testdata/*.txt are scripts of inputs, each block followed by "----" and
// the exact output the Machine must produce (kvcore/internal/scripttest
// runs them on cockroachdb/datadriven). Run with -rewrite to rewrite the
// expected outputs after reviewing a change.
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

func TestScripts(t *testing.T) {
	scripttest.Run(t, "testdata/*.txt", func(t *testing.T) func(*scripttest.Line) string {
		env := &scriptEnv{t: t, outs: map[string][]float32{}, keys: map[string]*Key{},
			cfg: Config{Shards: 1, Mode: wire.ModeSync, Join: transport.Join{Job: "j"}}}
		return env.run
	})
}

type scriptEnv struct {
	t    *testing.T
	cfg  Config
	m    *Machine
	outs map[string][]float32
	keys map[string]*Key
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

func (e *scriptEnv) run(l *scripttest.Line) string {
	var b strings.Builder
	callErr := func(err error) {
		if err != nil {
			fmt.Fprintf(&b, "call error: %v\n", err)
		}
	}
	tok := l.Word(0)
	switch l.Cmd {
	case "config":
		c := &e.cfg
		if l.Has("shards") {
			c.Shards = l.Int("shards")
		}
		if l.Str("mode") == "async" {
			c.Mode = wire.ModeAsync
		}
		c.Join.Workers = l.Int("workers")
		c.Join.BigArrayBound = l.Int("bound")
		if l.Has("window") {
			f := l.Ints("window")
			c.Window.Requests, c.Window.Bytes = int(f[0]), int(f[1])
			if len(f) > 2 {
				c.Window.Messages = int(f[2])
			}
		}
		if l.Has("batch") {
			f := l.Ints("batch")
			c.BatchEntry, c.BatchBytes, c.BatchEntries = int(f[0]), int(f[1]), int(f[2])
		}
		return ""
	case "start":
		e.machine().Start()
	case "send":
		m := e.machine()
		shards := []int{}
		if len(l.Args) > 0 {
			shards = append(shards, int(l.WordNum(0)))
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
		if out, ok := e.machine().Next(int(l.WordNum(0))); ok {
			b.WriteString(e.formatOut(out))
		}
	case "written":
		e.machine().Written(int(l.WordNum(0)))
	case "recv":
		s := int(l.WordNum(0))
		m := e.machine()
		m.Recv(s, m.Epoch(s), e.frame(l))
	case "reconnect":
		e.machine().Reconnected(int(l.WordNum(0)), transport.Epoch(l.WordNum(1)))
	case "lost":
		e.machine().Lost(int(l.WordNum(0)), fmt.Errorf("gave up"))
	case "tick":
		e.machine().Tick(time.Duration(l.WordNum(0)) * time.Millisecond)
	case "init":
		vals := l.Float32s("vals")
		shape := []int64{int64(len(vals))}
		if l.Has("shape") {
			shape = l.Ints("shape")
		}
		spec := KeySpec{ID: l.Num("key"), Shape: shape, N: len(vals)}
		if name, ok := l.Get("name"); ok {
			spec.ID, spec.Str, spec.Name = wire.StrKeyID(name), true, name
		}
		k, err := e.machine().InitKey(tok, spec, vals)
		callErr(err)
		if k != nil {
			e.keys[keyName(l)] = k
		}
	case "push", "pushpull":
		k := e.keys[keyName(l)]
		dt, data := wire.DTypeF32, l.Float32s("vals")
		n := len(data)
		if d, ok := l.Get("dtype"); ok {
			dt = map[string]wire.DType{"2bit": wire.DType2Bit, "1bit": wire.DType1Bit}[d]
			n = l.Int("n")
			data = l.Bits("words")
		}
		if l.Cmd == "push" {
			callErr(e.machine().Push(tok, k, dt, data, n))
		} else {
			out := make([]float32, k.N())
			e.outs[tok] = out
			callErr(e.machine().PushPull(tok, k, dt, data, n, out))
		}
	case "pull":
		k := e.keys[keyName(l)]
		out := make([]float32, k.N())
		e.outs[tok] = out
		callErr(e.machine().Pull(tok, k, out))
	case "rowpush", "rowpull":
		// rows=<r,...> width=<w> [vals=<v,...>] (rows.go)
		k := e.keys[keyName(l)]
		rows := l.Uint32s("rows")
		width := l.Int("width")
		if l.Cmd == "rowpush" {
			callErr(e.machine().RowPush(tok, k, rows, width, l.Float32s("vals")))
		} else {
			out := make([]float32, len(rows)*width)
			e.outs[tok] = out
			callErr(e.machine().RowPull(tok, k, rows, width, out))
		}
	case "barrier":
		callErr(e.machine().Barrier(tok))
	case "save":
		callErr(e.machine().SaveStates(tok))
	case "leave":
		callErr(e.machine().Leave(tok))
	case "cmd":
		callErr(e.machine().Command(tok, l.Int("head"), []byte(l.Str("body"))))
	case "cancel":
		e.machine().Cancel(tok)
	case "close":
		e.machine().Close()
	default:
		e.t.Fatalf("%s: unknown command %q", l.Pos, l.Cmd)
	}
	b.WriteString(e.ready())
	return b.String()
}

func keyName(l *scripttest.Line) string {
	if n, ok := l.Get("name"); ok {
		return "s:" + n
	}
	return "i:" + l.Str("key")
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
			fmt.Fprintf(&b, " vals=%s", scripttest.FormatFloat32s(out))
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
		s += " vals=" + scripttest.FormatFloat32s(wire.Float32View(m.Data(), nil))
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

// frame builds a server message for "recv <shard> <kind> ...".
func (e *scriptEnv) frame(l *scripttest.Line) []byte {
	kind := l.Word(1)
	switch kind {
	case "answers":
		var b wire.AnswersBuilder
		for _, ent := range strings.Split(strings.Join(l.Words(2), " "), ";") {
			m := e.reply(l.Sub(ent), "/")
			b.Add(&m)
		}
		m, _ := b.Append(nil)
		return wire.Append(nil, &m)
	case "welcome":
		w := &wire.Welcome{WorkerID: l.Str("id"), Rank: uint32(l.Num("rank")), ResumeKey: l.Str("key"),
			NumWorkers: uint32(l.Num("workers")), Heartbeat: uint32(l.Num("hb")), Timeout: 10000, Mode: e.cfg.Mode}
		if l.Has("window") {
			f := l.Ints("window")
			w.Window, w.WindowBytes = uint32(f[0]), uint64(f[1])
		}
		return wire.AppendWelcome(nil, w)
	case "members":
		var ranks []int
		for _, r := range l.Ints("ranks") {
			ranks = append(ranks, int(r))
		}
		sort.Ints(ranks)
		return wire.AppendMembers(nil, ranks)
	case "pong":
		return wire.AppendHeader(nil, &wire.Header{Type: wire.TypePong})
	case "raw":
		return l.Hex("hex")
	}
	m := e.reply(l.Sub(strings.Join(l.Words(1), " ")), ",")
	return wire.Append(nil, &m)
}

// reply builds an ack or an error, "ack|error seq=<n> ...", its values
// separated by sep.
func (e *scriptEnv) reply(a *scripttest.Line, sep string) wire.Msg {
	h := wire.Header{Seq: a.Num("seq"), Round: a.Num("round"), Count: uint32(a.Num("count")), Key: a.Num("key")}
	var payload []byte
	switch a.Cmd {
	case "ack":
		h.Type = wire.TypeAck
		if a.Has("late") {
			h.Flags |= wire.FlagLate
		}
		if a.Has("rescaled") {
			h.Flags |= wire.FlagRescaled
		}
		if v, ok := a.Get("vals"); ok {
			vals := a.ParseFloat32s(v, sep)
			h.DType, h.Count = wire.DTypeF32, uint32(len(vals))
			h.Offset, h.Total = uint32(a.Num("off")), uint32(len(vals))+uint32(a.Num("off"))
			if a.Has("total") {
				h.Total = uint32(a.Num("total"))
			}
			payload = wire.AppendFloat32s(nil, vals)
		}
		if a.Has("states") {
			payload = wire.AppendStates(nil, &wire.States{NumUpdate: 3})
		}
	case "error":
		h.Type, h.Code = wire.TypeError, codeNamed(e.t, a.Str("code"))
		payload = []byte(a.Str("text"))
	default:
		e.t.Fatalf("%s: unknown message %q", a.Pos, a.Cmd)
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
