package psm

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/webkv/webkv/kvcore/internal/scripttest"
	"github.com/webkv/webkv/kvcore/wire"
)

// batchFrame builds a request batch for the scripts:
// entries=<seq>:<key>:<round>[:<v/v/...>];... (values for pushes).
func batchFrame(a *scripttest.Line) []byte {
	typ := map[string]wire.Type{"pushes": wire.TypePushes, "pulls": wire.TypePulls, "pushpulls": wire.TypePushPulls}[a.Cmd]
	dt := wire.DTypeF32
	if typ == wire.TypePulls {
		dt = wire.DTypeNone
	}
	var b wire.BatchBuilder
	b.Reset(typ, dt)
	var data []byte
	for _, ent := range strings.Split(a.Str("entries"), ";") {
		f := strings.Split(ent, ":")
		seq, _ := strconv.ParseUint(f[0], 10, 64)
		key, _ := strconv.ParseInt(f[1], 10, 64)
		round, _ := strconv.ParseUint(f[2], 10, 64)
		h := wire.Header{Seq: seq, Key: uint64(key), Round: round}
		if len(f) > 3 {
			vals := a.ParseFloat32s(f[3], "/")
			h.Count, h.Total = uint32(len(vals)), uint32(len(vals))
			data = wire.AppendFloat32s(data, vals)
		}
		b.Add(&h)
	}
	head := b.Head(a.Num("ack"), len(data))
	return append(append([]byte(nil), head...), data...)
}

// formatAnswers prints an Answers message as "<conn> answers" and its
// replies, each as a single reply would print, indented.
func (e *scriptEnv) formatAnswers(b *strings.Builder, m Envelope) {
	es, err := wire.DecodeBatch(&m.Msg, nil, nil)
	if err != nil {
		e.t.Fatalf("answers do not decode: %v", err)
	}
	fmt.Fprintf(b, "%s answers n=%d\n", e.names[m.To], len(es))
	for _, x := range es {
		var sub strings.Builder
		e2 := *e
		sub.WriteString(e2.format(Ready{Msgs: []Envelope{{To: m.To, Msg: x}}}))
		for _, line := range strings.Split(strings.TrimRight(sub.String(), "\n"), "\n") {
			b.WriteString("  " + line + "\n")
		}
	}
}
