package sandbox

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"github.com/webkv/webkv/kvcore/updater"
	"github.com/webkv/webkv/kvcore/wire"
)

// instance is one running module: an updater.Instance.
type instance struct {
	h    *Host
	c    *compiled
	hash updater.Hash
	mod  api.Module
	// the ABI's functions (free, states, init may be nil)
	alloc, free, update, states, init api.Function

	mu       sync.Mutex
	dead     error // set once unloaded: every call returns it
	released bool  // the reference on c was dropped
	arena    uint32
	arenaN   uint32

	// WASI state, used by the host functions during calls (under mu).
	clock uint64 // fake nanoseconds
	rng   *rand.ChaCha8
	out   []byte // the start of what the current call wrote to stdout and stderr
}

// instKey carries the running instance in the context of a call, for the
// WASI functions.
type instKey struct{}

// maxOut is how much of a call's stdout and stderr is kept for error
// messages.
const maxOut = 1 << 10

// Layout of the arena: the call block, the table of state pointers, the
// key name, then recv, stored and the states, each 16-byte aligned.
const (
	arenaTable = updater.CallSize
	arenaName  = arenaTable + 4*updater.MaxStates
)

func align16(n uint64) uint64 { return (n + 15) &^ 15 }

// instantiate makes an instance of c; on failure it drops the caller's
// reference on c.
func (h *Host) instantiate(ctx context.Context, c *compiled, config []byte) (*instance, error) {
	in := &instance{h: h, c: c, hash: c.hash, rng: rand.NewChaCha8(c.hash)}
	in.mu.Lock()
	defer in.mu.Unlock()
	cctx, cancel := in.callCtx(ctx)
	mod, err := c.rt.InstantiateModule(cctx, c.cm, wazero.NewModuleConfig().WithName("").WithStartFunctions())
	cancel()
	if err != nil {
		h.release(c)
		return nil, fmt.Errorf("%w: module %v: instantiate: %v", updater.ErrBadModule, c.hash, err)
	}
	in.mod = mod
	in.alloc, in.free = mod.ExportedFunction(updater.ExportAlloc), mod.ExportedFunction(updater.ExportFree)
	in.update, in.states, in.init = mod.ExportedFunction(updater.ExportUpdate), mod.ExportedFunction(updater.ExportStates), mod.ExportedFunction(updater.ExportInit)
	fail := func(err error) (*instance, error) {
		in.unload(err)
		return nil, err
	}
	if f := mod.ExportedFunction(updater.ExportInitialize); f != nil {
		if _, err := in.invoke(ctx, updater.ExportInitialize, "", f); err != nil {
			return fail(err)
		}
	}
	res, err := in.invoke(ctx, updater.ExportABIVersion, "", mod.ExportedFunction(updater.ExportABIVersion))
	if err != nil {
		return fail(err)
	}
	if v := int32(res[0]); v != updater.ABIVersion {
		return fail(fmt.Errorf("%w: module %v speaks ABI version %d, this host %d", updater.ErrBadModule, c.hash, v, updater.ABIVersion))
	}
	configure := mod.ExportedFunction(updater.ExportConfigure)
	if configure == nil {
		if len(config) > 0 {
			return fail(fmt.Errorf("%w: module %v takes no config (no export %s) but got %d bytes", updater.ErrBadModule, c.hash, updater.ExportConfigure, len(config)))
		}
		return in, nil
	}
	view, err := in.ensureArena(ctx, arenaName+align16(uint64(len(config))), "")
	if err != nil {
		return fail(err)
	}
	clear(view[:arenaName])
	in.header(view, &updater.Call{})
	copy(view[arenaName:], config)
	res, err = in.invoke(ctx, updater.ExportConfigure, "", configure, uint64(in.arena), uint64(in.arena+arenaName), uint64(len(config)))
	if err != nil {
		return fail(err)
	}
	if st := int32(res[0]); st != updater.StatusOK {
		return fail(fmt.Errorf("%w: module %v refused its config %q: %s", updater.ErrBadModule, c.hash, clip(config), in.message()))
	}
	return in, nil
}

func clip(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}

func (in *instance) Hash() updater.Hash { return in.hash }

func (in *instance) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithValue(ctx, instKey{}, in), in.h.opts.CallBudget)
}

// invoke calls fn under the time budget. An error is fatal: the instance
// is unloaded and the error says why.
func (in *instance) invoke(ctx context.Context, what, key string, fn api.Function, args ...uint64) ([]uint64, error) {
	in.out = in.out[:0]
	cctx, cancel := in.callCtx(ctx)
	res, err := fn.Call(cctx, args...)
	cancel()
	if err == nil {
		return res, nil
	}
	var why string
	var cause error
	var ee *sys.ExitError
	switch {
	case errors.As(err, &ee) && ee.ExitCode() == sys.ExitCodeDeadlineExceeded && ctx.Err() == nil:
		why = "ran past its time budget of " + in.h.opts.CallBudget.String()
	case errors.As(err, &ee) && (ee.ExitCode() == sys.ExitCodeDeadlineExceeded || ee.ExitCode() == sys.ExitCodeContextCanceled):
		why, cause = "stopped", ctx.Err()
	case errors.As(err, &ee):
		why = "exited with code " + strconv.FormatUint(uint64(ee.ExitCode()), 10)
	default:
		msg, _, _ := strings.Cut(err.Error(), "\n")
		why = "trapped: " + msg
	}
	if mem := in.mod.Memory(); mem != nil {
		why += fmt.Sprintf(" (memory: %d of its %d-page limit)", uint64(mem.Size())/65536, in.h.opts.MemoryPages)
	}
	if len(in.out) > 0 {
		why += "; it wrote " + strconv.Quote(head(in.out, 300))
	}
	where := what
	if key != "" {
		where += " of key " + key
	}
	var e error
	if cause != nil {
		e = fmt.Errorf("sandbox: module %v, %s: %s; unloaded (%w: %w)", in.hash, where, why, updater.ErrFailed, cause)
	} else {
		e = fmt.Errorf("sandbox: module %v, %s: %s; unloaded (%w)", in.hash, where, why, updater.ErrFailed)
	}
	in.unload(e)
	return nil, e
}

func head(b []byte, n int) string {
	s := strings.TrimSpace(strings.ToValidUTF8(string(b), "?"))
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "") + "..."
	}
	return s
}

// unload closes the module after a fatal error (or Close): every later
// call returns err.
func (in *instance) unload(err error) {
	if in.dead == nil {
		in.dead = err
	}
	if in.mod != nil {
		in.mod.Close(context.Background())
	}
	if !in.released {
		in.released = true
		in.h.mu.Lock()
		delete(in.h.live, in)
		in.h.mu.Unlock()
		in.h.release(in.c)
	}
}

func (in *instance) Close() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.unload(fmt.Errorf("sandbox: module %v: %w", in.hash, updater.ErrClosed))
	return nil
}

// ensureArena makes the arena at least need bytes and returns a view of
// its first need bytes.
func (in *instance) ensureArena(ctx context.Context, need uint64, key string) ([]byte, error) {
	limit := uint64(in.h.opts.MemoryPages) * 65536
	if need > limit || need > math.MaxUint32 {
		return nil, fmt.Errorf("sandbox: module %v: key %s needs %d bytes of module memory (value, push and states), above the limit of %d", in.hash, key, need, limit)
	}
	if need > uint64(in.arenaN) {
		if in.arena != 0 && in.free != nil {
			if _, err := in.invoke(ctx, updater.ExportFree, key, in.free, uint64(in.arena)); err != nil {
				return nil, err
			}
		}
		in.arena, in.arenaN = 0, 0
		size := max(need, 64<<10)
		res, err := in.invoke(ctx, updater.ExportAlloc, key, in.alloc, size)
		if err != nil {
			return nil, err
		}
		p := uint32(res[0])
		if p == 0 {
			return nil, fmt.Errorf("sandbox: module %v could not allocate %d bytes for key %s (memory limit %d pages)", in.hash, size, key, in.h.opts.MemoryPages)
		}
		if p%16 != 0 {
			e := fmt.Errorf("sandbox: module %v: %s returned the unaligned address %d; unloaded (%w)", in.hash, updater.ExportAlloc, p, updater.ErrFailed)
			in.unload(e)
			return nil, e
		}
		in.arena, in.arenaN = p, uint32(size)
	}
	view, ok := in.mod.Memory().Read(in.arena, uint32(need))
	if !ok {
		e := fmt.Errorf("sandbox: module %v: %s gave a block outside its memory; unloaded (%w)", in.hash, updater.ExportAlloc, updater.ErrFailed)
		in.unload(e)
		return nil, e
	}
	return view, nil
}

// layout is where a call's arrays go in the arena.
type layout struct {
	name, recv, stored, states uint64 // offsets in the arena
	vec                        uint64 // bytes per array, aligned
	need                       uint64
}

func plan(c *updater.Call, nstates int, arrays bool) layout {
	var l layout
	l.name = arenaName
	l.recv = l.name + align16(uint64(len(c.Name)))
	l.need = l.recv
	if arrays {
		l.vec = align16(4 * uint64(len(c.Stored)))
		l.stored = l.recv + l.vec
		l.states = l.stored + l.vec
		l.need = l.states + uint64(nstates)*l.vec
	}
	return l
}

// header writes c's fields into the call block at the start of view.
func (in *instance) header(view []byte, c *updater.Call) {
	b := view[:updater.CallSize]
	clear(b)
	le := binary.LittleEndian
	le.PutUint32(b[updater.OffABI:], updater.ABIVersion)
	le.PutUint32(b[updater.OffSize:], updater.CallSize)
	le.PutUint64(b[updater.OffKey:], c.Key)
	if c.Str {
		le.PutUint32(b[updater.OffFlags:], updater.FlagStrKey)
	}
	le.PutUint32(b[updater.OffN:], uint32(len(c.Stored)))
	le.PutUint32(b[updater.OffT:], uint32(c.T))
	le.PutUint32(b[updater.OffOffset:], uint32(c.Offset))
	le.PutUint32(b[updater.OffTotal:], uint32(c.Total))
	le.PutUint32(b[updater.OffWorkers:], uint32(c.Workers))
}

// prepare writes the call block, the name and (with arrays) recv, stored
// and states into the arena.
func (in *instance) prepare(ctx context.Context, c *updater.Call, arrays, withRecv bool) (layout, error) {
	if len(c.States) > updater.MaxStates {
		return layout{}, fmt.Errorf("sandbox: key %s: %d state arrays, at most %d", c.Name, len(c.States), updater.MaxStates)
	}
	l := plan(c, len(c.States), arrays)
	view, err := in.ensureArena(ctx, l.need, c.Name)
	if err != nil {
		return l, err
	}
	in.header(view, c)
	le := binary.LittleEndian
	a := uint64(in.arena)
	le.PutUint32(view[updater.OffName:], uint32(a+l.name))
	le.PutUint32(view[updater.OffNameLen:], uint32(len(c.Name)))
	copy(view[l.name:], c.Name)
	if !arrays {
		return l, nil
	}
	n := uint64(len(c.Stored))
	if withRecv {
		if len(c.Recv) != len(c.Stored) {
			return l, fmt.Errorf("sandbox: key %s: push of %d values, stored %d", c.Name, len(c.Recv), len(c.Stored))
		}
		le.PutUint32(view[updater.OffRecv:], uint32(a+l.recv))
		putFloats(view[l.recv:l.recv+4*n], c.Recv)
	}
	le.PutUint32(view[updater.OffStored:], uint32(a+l.stored))
	putFloats(view[l.stored:l.stored+4*n], c.Stored)
	if len(c.States) > 0 {
		le.PutUint32(view[updater.OffStates:], uint32(a+arenaTable))
		le.PutUint32(view[updater.OffNStates:], uint32(len(c.States)))
	}
	for i, s := range c.States {
		if len(s) != len(c.Stored) {
			return l, fmt.Errorf("sandbox: key %s: state %d has %d values, stored %d", c.Name, i, len(s), len(c.Stored))
		}
		off := l.states + uint64(i)*l.vec
		le.PutUint32(view[arenaTable+4*i:], uint32(a+off))
		putFloats(view[off:off+4*n], s)
	}
	return l, nil
}

// results copies stored and the states back out of the arena.
func (in *instance) results(c *updater.Call, l layout) error {
	view, ok := in.mod.Memory().Read(in.arena, uint32(l.need))
	if !ok {
		e := fmt.Errorf("sandbox: module %v: its arena is outside its memory after the call; unloaded (%w)", in.hash, updater.ErrFailed)
		in.unload(e)
		return e
	}
	n := uint64(len(c.Stored))
	wire.DecodeFloat32s(view[l.stored:l.stored+4*n], c.Stored)
	for i, s := range c.States {
		off := l.states + uint64(i)*l.vec
		wire.DecodeFloat32s(view[off:off+4*n], s)
	}
	return nil
}

func putFloats(dst []byte, f []float32) {
	if b, ok := wire.Float32Bytes(f); ok {
		copy(dst, b)
		return
	}
	for i, x := range f {
		binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(x))
	}
}

// message reads the module's error message from the call block.
func (in *instance) message() string {
	mem := in.mod.Memory()
	hdr, ok := mem.Read(in.arena, updater.CallSize)
	if !ok {
		return "(no message)"
	}
	p, n := binary.LittleEndian.Uint32(hdr[updater.OffMsg:]), binary.LittleEndian.Uint32(hdr[updater.OffMsgLen:])
	if n == 0 {
		return "(no message)"
	}
	msg, ok := mem.Read(p, min(n, updater.MaxMessage))
	if !ok {
		return "(message outside memory)"
	}
	return strings.ToValidUTF8(string(msg), "?")
}

// status turns a non-zero status of call what into an error: 1 refuses
// this call only, anything else is fatal.
func (in *instance) status(st int32, what, key string) error {
	if st == updater.StatusRefused {
		return fmt.Errorf("sandbox: module %v refused %s of key %s: %s", in.hash, what, key, in.message())
	}
	e := fmt.Errorf("sandbox: module %v, %s of key %s: status %d: %s; unloaded (%w)", in.hash, what, key, st, in.message(), updater.ErrFailed)
	in.unload(e)
	return e
}

func (in *instance) NumStates(ctx context.Context, c *updater.Call) (int, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.dead != nil {
		return 0, in.dead
	}
	if in.states == nil {
		return 0, nil
	}
	saved := c.States
	c.States = nil
	_, err := in.prepare(ctx, c, false, false)
	c.States = saved
	if err != nil {
		return 0, err
	}
	res, err := in.invoke(ctx, updater.ExportStates, c.Name, in.states, uint64(in.arena))
	if err != nil {
		return 0, err
	}
	n := int32(res[0])
	if n < 0 || n > updater.MaxStates {
		e := fmt.Errorf("sandbox: module %v, %s of key %s: returned %d (want 0 to %d): %s; unloaded (%w)", in.hash, updater.ExportStates, c.Name, n, updater.MaxStates, in.message(), updater.ErrFailed)
		in.unload(e)
		return 0, e
	}
	return int(n), nil
}

func (in *instance) Init(ctx context.Context, c *updater.Call) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.dead != nil {
		return in.dead
	}
	if in.init == nil {
		return nil
	}
	l, err := in.prepare(ctx, c, true, false)
	if err != nil {
		return err
	}
	res, err := in.invoke(ctx, updater.ExportInit, c.Name, in.init, uint64(in.arena))
	if err != nil {
		return err
	}
	if st := int32(res[0]); st != updater.StatusOK {
		return in.status(st, updater.ExportInit, c.Name)
	}
	return in.results(c, l)
}

func (in *instance) Update(ctx context.Context, c *updater.Call) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.dead != nil {
		return in.dead
	}
	l, err := in.prepare(ctx, c, true, true)
	if err != nil {
		return err
	}
	res, err := in.invoke(ctx, updater.ExportUpdate, c.Name, in.update, uint64(in.arena))
	if err != nil {
		return err
	}
	if st := int32(res[0]); st != updater.StatusOK {
		return in.status(st, updater.ExportUpdate, c.Name)
	}
	return in.results(c, l)
}
