package psm

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore/internal/scripttest"
	"github.com/webkv/webkv/kvcore/updater"
	"github.com/webkv/webkv/kvcore/wire"
)

// Scripts of the custom updater (testdata/updater/*.txt), in the format of
// TestScripts, with these commands besides:
//
//	upd <conn> seq=<n> rule=<name> [config=<text>]   install a module (command updater.CommandHead)
//	loadsaved <conn> seq=<n>                          LoadStates with the last SaveStates answer
//	restart                                           snapshot, then Restore into a new Job
//	loads                                             print the loader's log (loads, closes)
//	policy refuse|allow                               make the loader refuse every module, or not
//	noloader                                          the next Job gets no Config.Updaters
//
// psm holds no WebAssembly runtime, so the modules here are scriptLoader's
// rules, written in Go (the sandbox's own tests and the relay's
// TestWasmUpdater* run real modules in wazero):
//
//	scaled   stored += s*recv (config "s=<x>", default 1); no states
//	mom      one state m, initialized to stored: m += recv; stored += m
//	trap     fails as a trapping module does (updater.ErrFailed), then stays dead
//	refuse   refuses every update (status 1)
//	refused  is refused by the loader's policy (updater.ErrRefused)
func TestUpdaterScripts(t *testing.T) {
	scripttest.Run(t, "testdata/updater/*.txt", func(t *testing.T) func(*scripttest.Line) string {
		l := &scriptLoader{}
		env := &updEnv{scriptEnv: newScriptEnv(t, l), loader: l}
		t.Cleanup(func() {
			if env.j != nil {
				env.j.Close()
			}
			if l.live != 0 {
				t.Errorf("%d module instances not closed", l.live)
			}
		})
		return env.run
	})
}

type updEnv struct {
	*scriptEnv
	loader *scriptLoader
	saved  []byte // payload of the last SaveStates answer
}

func (e *updEnv) run(l *scripttest.Line) string {
	if l.Has("at") {
		e.now = time.Duration(l.Num("at")) * time.Millisecond
	}
	switch l.Cmd {
	case "upd":
		m := updater.Module{Code: append([]byte("\x00asm\x01\x00\x00\x00"), l.Str("rule")...), Config: []byte(l.Str("config"))}
		body, err := m.AppendBinary(nil)
		if err != nil {
			e.t.Fatal(err)
		}
		h := wire.Header{Type: wire.TypeCommand, Seq: l.Num("seq"), Key: updater.CommandHead}
		return e.step(l.Word(0), wire.Append(nil, &wire.Msg{Header: h, Payload: body}))
	case "loadsaved":
		h := wire.Header{Type: wire.TypeLoadStates, Seq: l.Num("seq")}
		return e.step(l.Word(0), wire.Append(nil, &wire.Msg{Header: h, Payload: e.saved}))
	case "restart":
		snap, err := e.job().AppendSnapshot(nil)
		if err != nil {
			e.t.Fatal(err)
		}
		e.j.Close()
		j, err := Restore(e.cfg, snap, e.now)
		if err != nil {
			return fmt.Sprintf("restore: %v\n", err)
		}
		e.j = j
		checkBudget(e.t, e.j)
		return "restored\n"
	case "noloader":
		e.cfg.Updaters = nil
		return ""
	case "policy":
		e.loader.refuseAll = l.Word(0) == "refuse"
		return ""
	case "loads":
		s := strings.Join(e.loader.log, "\n")
		e.loader.log = nil
		return s
	}
	out := e.scriptEnv.run(l)
	if l.Cmd == "config" {
		return out
	}
	return e.capture(out, e.j.rd)
}

func (e *updEnv) step(conn string, frame []byte) string {
	rd := e.job().Step(e.now, e.conn(conn), frame)
	out := e.capture(e.format(rd), rd)
	checkBudget(e.t, e.j)
	return out
}

// capture keeps the payload of a SaveStates answer for loadsaved.
func (e *updEnv) capture(s string, rd Ready) string {
	for _, m := range rd.Msgs {
		if m.Msg.Type == wire.TypeAck && m.Msg.DType == wire.DTypeNone && len(m.Msg.Payload) > 0 {
			if _, err := wire.DecodeStates(m.Msg.Payload, nil); err == nil {
				e.saved = append(e.saved[:0], m.Msg.Payload...)
			}
		}
	}
	return s
}

// scriptLoader loads the rules of TestUpdaterScripts and logs what it
// does.
type scriptLoader struct {
	log       []string
	live      int
	refuseAll bool
}

func (l *scriptLoader) Load(_ context.Context, m *updater.Module) (updater.Instance, error) {
	rule := string(m.Code[8:])
	if l.refuseAll {
		l.log = append(l.log, "refuse "+rule)
		return nil, fmt.Errorf("%w: this host runs no custom updater modules", updater.ErrRefused)
	}
	switch rule {
	case "scaled", "mom", "trap", "refuse":
	case "refused":
		l.log = append(l.log, "refuse "+rule)
		return nil, fmt.Errorf("%w: module %s is not on the allow-list", updater.ErrRefused, rule)
	default:
		return nil, fmt.Errorf("%w: unknown rule %q", updater.ErrBadModule, rule)
	}
	in := &scriptRule{l: l, rule: rule, hash: m.Hash(), s: 1}
	if v, ok := strings.CutPrefix(string(m.Config), "s="); ok {
		s, err := strconv.ParseFloat(v, 32)
		if err != nil {
			return nil, fmt.Errorf("%w: config %q", updater.ErrBadModule, m.Config)
		}
		in.s = float32(s)
	}
	l.live++
	l.log = append(l.log, fmt.Sprintf("load %s config=%q", rule, m.Config))
	return in, nil
}

type scriptRule struct {
	l      *scriptLoader
	rule   string
	hash   updater.Hash
	s      float32
	dead   error
	closed bool
}

func (r *scriptRule) Hash() updater.Hash { return r.hash }

func (r *scriptRule) NumStates(_ context.Context, c *updater.Call) (int, error) {
	if r.dead != nil {
		return 0, r.dead
	}
	if r.rule == "mom" {
		return 1, nil
	}
	return 0, nil
}

func (r *scriptRule) Init(_ context.Context, c *updater.Call) error {
	copy(c.States[0], c.Stored)
	r.l.log = append(r.l.log, fmt.Sprintf("init %s key=%s t=%d", r.rule, c.Name, c.T))
	return nil
}

func (r *scriptRule) Update(_ context.Context, c *updater.Call) error {
	if r.dead != nil {
		return r.dead
	}
	r.l.log = append(r.l.log, fmt.Sprintf("update %s key=%s t=%d workers=%d part=[%d,+%d) of %d", r.rule, c.Name, c.T, c.Workers, c.Offset, len(c.Stored), c.Total))
	switch r.rule {
	case "scaled":
		for i, g := range c.Recv {
			c.Stored[i] += r.s * g
		}
	case "mom":
		m := c.States[0]
		for i, g := range c.Recv {
			m[i] += g
			c.Stored[i] += m[i]
		}
	case "trap":
		r.dead = fmt.Errorf("module trap, update of key %s: trapped: unreachable; unloaded (%w)", c.Name, updater.ErrFailed)
		r.Close()
		return r.dead
	case "refuse":
		return errors.New("module refuse refused the update of key " + c.Name)
	}
	return nil
}

func (r *scriptRule) Close() error {
	if !r.closed {
		r.closed = true
		r.l.live--
		r.l.log = append(r.l.log, "close "+r.rule)
	}
	return nil
}
