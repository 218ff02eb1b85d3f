//go:build !js && !wasip1

package relay

import (
	"context"
	"fmt"
	"time"

	"github.com/webkv/webkv/kvcore/updater"
	"github.com/webkv/webkv/kvcore/wire"
	"github.com/webkv/webkv/wasm/sandbox"
)

// UpdaterConfig configures the custom updater modules the relay runs
// (kvcore.Store.SetUpdaterModule on a dist store): WebAssembly modules with
// the ABI of package kvcore/updater, one sandboxed instance per job (package
// sandbox), checkpointed with the job. Zero fields take the defaults
// of sandbox.Options.
type UpdaterConfig struct {
	// Refuse refuses every module: jobs run built-in optimizers only.
	Refuse bool
	// Allow, if not empty, lists the only module hashes
	// ("sha256:<hex>", or the hex alone) the relay runs.
	Allow []string
	// MaxModuleBytes bounds a module's code (default 16 MiB).
	MaxModuleBytes int
	// MemoryPages caps each instance's memory, in 64 KiB pages (default
	// 4096: 256 MiB).
	MemoryPages uint32
	// CallBudget bounds each call into a module (default 5 s).
	CallBudget time.Duration
	// CacheDir keeps compiled modules on disk across restarts (default:
	// in memory only).
	CacheDir string
	// Host, if set, runs the modules instead of a host of the relay's own
	// (the fields above are then the host's business): several relays in
	// one process can share one compilation cache. The relay does not
	// close it.
	Host *sandbox.Host
}

// openUpdaters makes the relay's module host, before jobs are restored.
func (s *Server) openUpdaters() error {
	c := s.cfg.Updaters
	if c.Host != nil {
		s.upd = c.Host
		return nil
	}
	o := sandbox.Options{Refuse: c.Refuse, MaxModuleBytes: c.MaxModuleBytes, MemoryPages: c.MemoryPages,
		CallBudget: c.CallBudget, CacheDir: c.CacheDir}
	for _, a := range c.Allow {
		h, err := updater.ParseHash(a)
		if err != nil {
			return fmt.Errorf("relay: updater allow-list: %w", err)
		}
		o.Allow = append(o.Allow, h)
	}
	h, err := sandbox.New(&o)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	s.upd, s.ownUpd = h, true
	return nil
}

// updaters is the Loader the jobs' state machines get.
func (s *Server) updaters() updater.Loader {
	if s.upd == nil {
		return nil
	}
	return s.upd
}

// closeUpdaters closes the relay's own host once its jobs stopped (and
// the compilations compileFirst started ended).
func (s *Server) closeUpdaters() error {
	s.compiles.Wait()
	if s.upd != nil && s.ownUpd {
		return s.upd.Close()
	}
	return nil
}

// compileBudget bounds how long a module is compiled before its frame goes
// to the job (which then compiles it itself).
const compileBudget = 2 * time.Minute

// compileFirst compiles the module of an updater command before the job
// sees the frame, on a goroutine of its own: compiling takes seconds (far
// more under the race detector), and neither the job's goroutine, which
// serves every worker of the job, nor this connection's reader, which must
// go on reading the worker's heartbeats, should wait for it. The frame is
// posted once the module is compiled; the job then only instantiates it.
// Frames the worker sends meanwhile (heartbeats; requests of other
// goroutines, which have no order with the command) reach the job first.
// Only for peers whose Hello the job accepted (a peer before that cannot
// make the relay compile anything), and after the host's policy (size,
// allow-list) admitted the module; otherwise, and for errors, the frame
// goes to the job as it is, which answers the peer. It reports whether it
// took the frame.
func (j *job) compileFirst(p *peer, h *wire.Header, b *[]byte) bool {
	s := j.s
	if h.Type != wire.TypeCommand || h.Key != updater.CommandHead || s.upd == nil {
		return false
	}
	select {
	case <-p.joined:
	default:
		return false
	}
	m, err := updater.DecodeModule((*b)[wire.HeaderSize:], 0)
	if err != nil || s.upd.Check(m.Code) != nil {
		return false
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	s.compiles.Add(1)
	s.mu.Unlock()
	n := len(*b)
	go func() {
		defer s.compiles.Done()
		ctx, cancel := context.WithTimeout(context.Background(), compileBudget)
		start := time.Now()
		if err := s.upd.Compile(ctx, m.Code); err == nil {
			j.log.Info("updater module compiled", "module", m.Hash(), "bytes", len(m.Code), "took", time.Since(start).Round(time.Millisecond))
		}
		cancel()
		if !j.post(event{kind: evMsg, p: p, buf: b}) {
			p.release(n)
		}
	}()
	return true
}
