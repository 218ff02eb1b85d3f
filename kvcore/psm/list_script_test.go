package psm

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/webkv/webkv/kvcore/internal/scripttest"
	"github.com/webkv/webkv/kvcore/wire"
)

// listFrame builds a list request for the scripts: pushlist <conn> seq=<n>
// ack=<n> keys=<key>:<round>:<v/v/...>;... and pulllist <conn> seq=<n>
// ack=<n> keys=<key>;... total=<elements>; [perkey] writes the key table
// one entry per key (a client older than wire.FlagRuns), not runs; [str]
// marks string-key ids and
// total= overrides the element count.
func listFrame(a *scripttest.Line) []byte {
	typ := wire.TypePushList
	if a.Cmd == "pulllist" {
		typ = wire.TypePullList
	}
	var b wire.ListBuilder
	b.Reset(typ, 8)
	var data []byte
	total := 0
	for _, ent := range strings.Split(a.Str("keys"), ";") {
		f := strings.Split(ent, ":")
		key, _ := strconv.ParseInt(f[0], 10, 64)
		var round uint64
		if len(f) > 1 {
			round, _ = strconv.ParseUint(f[1], 10, 64)
		}
		if len(f) > 2 {
			vals := a.ParseFloat32s(f[2], "/")
			total += len(vals)
			data = wire.AppendFloat32s(data, vals)
		}
		b.Add(uint64(key), round)
	}
	if a.Has("total") {
		total = a.Int("total")
	}
	var flags uint16
	if a.Has("str") {
		flags = wire.FlagStrKey
	}
	h := b.ListHeader(a.Num("seq"), a.Num("ack"), flags, total)
	table := b.Table()
	if a.Has("perkey") {
		h.Flags &^= wire.FlagRuns
		table = perKeyTable(typ, a.Str("keys"))
	}
	h.PLen = uint32(len(table) + len(data))
	frame := wire.AppendHeader(nil, &h)
	frame = append(frame, table...)
	return append(frame, data...)
}

// perKeyTable is the key table of keys (as listFrame reads them) with one
// entry per key, as a client older than wire.FlagRuns writes it.
func perKeyTable(typ wire.Type, keys string) []byte {
	var t []byte
	for _, ent := range strings.Split(keys, ";") {
		f := strings.Split(ent, ":")
		key, _ := strconv.ParseInt(f[0], 10, 64)
		t = binary.AppendUvarint(t, uint64(key))
		if typ == wire.TypePushList {
			var round uint64
			if len(f) > 1 {
				round, _ = strconv.ParseUint(f[1], 10, 64)
			}
			t = binary.AppendUvarint(t, round)
		}
	}
	return append(t, make([]byte, (4-len(t)%4)%4)...)
}

// formatListAnswer prints a push list's per-key results.
func formatListAnswer(b *strings.Builder, m *wire.Msg) {
	rs, text, err := wire.DecodeListAnswer(m, int(m.Count), nil)
	if err != nil {
		fmt.Fprintf(b, " bad answer: %v", err)
		return
	}
	b.WriteString(" results=")
	for i, r := range rs {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(b, "%+d", r.Delta)
		if r.Flags&wire.FlagLate != 0 {
			b.WriteString("/late")
		}
		if r.Flags&wire.FlagRescaled != 0 {
			b.WriteString("/rescaled")
		}
		if r.Code != wire.CodeOK {
			fmt.Fprintf(b, "/%v", r.Code)
		}
	}
	if text != "" {
		fmt.Fprintf(b, " text=%q", text)
	}
}
