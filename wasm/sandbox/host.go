package sandbox

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/webkv/webkv/kvcore/updater"
)

// Options configure a Host; nil and zero fields take the defaults named.
type Options struct {
	// MemoryPages caps each instance's linear memory, in 64 KiB pages
	// (default 4096: 256 MiB; at most 65536, WebAssembly's 4 GiB).
	MemoryPages uint32
	// CallBudget bounds each call into a module (default 5 s).
	CallBudget time.Duration
	// MaxModuleBytes bounds a module's code (default 16 MiB).
	MaxModuleBytes int
	// Refuse refuses every module: a host that runs none.
	Refuse bool
	// Allow, if not empty, lists the only module hashes the host loads.
	Allow []updater.Hash
	// CacheDir, if set, keeps compiled code on disk (wazero's compilation
	// cache), so a restarted process does not compile its modules again.
	CacheDir string
	// MaxCompiled is how many compiled modules no instance uses are kept
	// for reuse (default 8).
	MaxCompiled int
}

// Defaults of Options.
const (
	DefaultMemoryPages    = 4096
	DefaultCallBudget     = 5 * time.Second
	DefaultMaxModuleBytes = 16 << 20
	DefaultMaxCompiled    = 8
)

// Host loads and runs updater modules. It implements updater.Loader; its
// methods are safe for concurrent use.
type Host struct {
	opts  Options
	cache wazero.CompilationCache
	rcfg  wazero.RuntimeConfig
	sem   chan struct{} // one compilation at a time

	mu     sync.Mutex
	mods   map[updater.Hash]*compiled
	live   map[*instance]bool
	closed bool
}

// compiled is one module compiled in its own wazero runtime (with the WASI
// functions its imports need), shared by every instance of it.
type compiled struct {
	hash    updater.Hash
	ready   chan struct{} // closed when rt/cm/err are set
	rt      wazero.Runtime
	cm      wazero.CompiledModule
	err     error
	refs    int // instances using it
	lastUse time.Time
}

// New returns a Host. It fails only on bad options or an unusable
// CacheDir.
func New(opts *Options) (*Host, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.MemoryPages == 0 {
		o.MemoryPages = DefaultMemoryPages
	}
	if o.MemoryPages > 65536 {
		return nil, fmt.Errorf("sandbox: memory limit of %d pages is above WebAssembly's 65536", o.MemoryPages)
	}
	if o.CallBudget <= 0 {
		o.CallBudget = DefaultCallBudget
	}
	if o.MaxModuleBytes <= 0 {
		o.MaxModuleBytes = DefaultMaxModuleBytes
	}
	if o.MaxCompiled <= 0 {
		o.MaxCompiled = DefaultMaxCompiled
	}
	o.Allow = slices.Clone(o.Allow)
	h := &Host{opts: o, sem: make(chan struct{}, 1), mods: map[updater.Hash]*compiled{}, live: map[*instance]bool{}}
	if o.CacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(o.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("sandbox: compilation cache in %s: %w", o.CacheDir, err)
		}
		h.cache = c
	} else {
		h.cache = wazero.NewCompilationCache()
	}
	h.rcfg = wazero.NewRuntimeConfig().
		WithCompilationCache(h.cache).
		WithMemoryLimitPages(o.MemoryPages).
		WithCloseOnContextDone(true).
		WithCustomSections(false)
	return h, nil
}

// Options returns the options in effect (defaults filled in).
func (h *Host) Options() Options { return h.opts }

// Close unloads every instance (their later calls fail with
// updater.ErrClosed) and frees the compiled modules.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	live := make([]*instance, 0, len(h.live))
	for in := range h.live {
		live = append(live, in)
	}
	h.mu.Unlock()
	for _, in := range live {
		in.Close()
	}
	h.mu.Lock()
	mods := h.mods
	h.mods = map[updater.Hash]*compiled{}
	h.mu.Unlock()
	ctx := context.Background()
	for _, c := range mods {
		<-c.ready
		if c.rt != nil {
			c.rt.Close(ctx)
		}
	}
	return h.cache.Close(ctx)
}

// Check applies the host's policy to code (size, refusal, allow-list)
// without compiling it.
func (h *Host) Check(code []byte) error {
	if h.opts.Refuse {
		return fmt.Errorf("%w: this host runs no custom updater modules", updater.ErrRefused)
	}
	if len(code) > h.opts.MaxModuleBytes {
		return fmt.Errorf("%w: module of %d bytes is above the limit of %d", updater.ErrBadModule, len(code), h.opts.MaxModuleBytes)
	}
	if len(h.opts.Allow) > 0 {
		m := updater.Module{Code: code}
		if hash := m.Hash(); !slices.Contains(h.opts.Allow, hash) {
			return fmt.Errorf("%w: module %v is not on the allow-list", updater.ErrRefused, hash)
		}
	}
	return nil
}

// Compile checks and compiles code so that a later Load of it is fast. It
// waits (bounded by ctx) for compilations of other modules.
func (h *Host) Compile(ctx context.Context, code []byte) error {
	c, err := h.acquire(ctx, code)
	if err != nil {
		return err
	}
	h.release(c)
	return nil
}

// acquire returns the compiled module of code with a reference taken,
// compiling it if needed.
func (h *Host) acquire(ctx context.Context, code []byte) (*compiled, error) {
	if err := h.Check(code); err != nil {
		return nil, err
	}
	hash := (&updater.Module{Code: code}).Hash()
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, fmt.Errorf("sandbox: %w", updater.ErrClosed)
	}
	c := h.mods[hash]
	if c != nil {
		c.refs++
		h.mu.Unlock()
		select {
		case <-c.ready:
		case <-ctx.Done():
			h.release(c)
			return nil, ctx.Err()
		}
		if c.err != nil {
			h.release(c)
			return nil, c.err
		}
		return c, nil
	}
	c = &compiled{hash: hash, ready: make(chan struct{}), refs: 1}
	h.mods[hash] = c
	h.mu.Unlock()
	select {
	case h.sem <- struct{}{}:
	case <-ctx.Done():
		c.err = ctx.Err()
		close(c.ready)
		h.forget(c)
		return nil, c.err
	}
	c.rt, c.cm, c.err = h.compile(code, hash)
	<-h.sem
	close(c.ready)
	if c.err != nil {
		h.forget(c)
		return nil, c.err
	}
	return c, nil
}

// forget drops a failed compilation (a later load tries again: the
// failure may have been a canceled wait).
func (h *Host) forget(c *compiled) {
	h.mu.Lock()
	if h.mods[c.hash] == c {
		delete(h.mods, c.hash)
	}
	h.mu.Unlock()
}

// release drops a reference; idle compiled modules beyond MaxCompiled are
// closed, least recently used first.
func (h *Host) release(c *compiled) {
	h.mu.Lock()
	c.refs--
	c.lastUse = time.Now()
	var evict []*compiled
	if c.refs == 0 && !h.closed {
		var idle []*compiled
		for _, x := range h.mods {
			if x.refs == 0 {
				select {
				case <-x.ready:
					idle = append(idle, x)
				default:
				}
			}
		}
		if len(idle) > h.opts.MaxCompiled {
			slices.SortFunc(idle, func(a, b *compiled) int { return a.lastUse.Compare(b.lastUse) })
			evict = idle[:len(idle)-h.opts.MaxCompiled]
			for _, x := range evict {
				delete(h.mods, x.hash)
			}
		}
	}
	h.mu.Unlock()
	for _, x := range evict {
		if x.rt != nil {
			x.rt.Close(context.Background())
		}
	}
}

// compile compiles code in a runtime of its own and checks its imports and
// exports against the ABI.
func (h *Host) compile(code []byte, hash updater.Hash) (wazero.Runtime, wazero.CompiledModule, error) {
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, h.rcfg)
	cm, err := rt.CompileModule(ctx, code)
	if err != nil {
		rt.Close(ctx)
		return nil, nil, fmt.Errorf("%w: module %v: %v", updater.ErrBadModule, hash, err)
	}
	if err := checkExports(cm); err != nil {
		rt.Close(ctx)
		return nil, nil, fmt.Errorf("%w: module %v: %v", updater.ErrBadModule, hash, err)
	}
	if err := instantiateWASI(ctx, rt, cm); err != nil {
		rt.Close(ctx)
		return nil, nil, fmt.Errorf("%w: module %v: %v", updater.ErrBadModule, hash, err)
	}
	return rt, cm, nil
}

type sig struct {
	params, results []api.ValueType
	required        bool
}

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

// abiExports are the functions of the ABI and their signatures.
var abiExports = map[string]sig{
	updater.ExportABIVersion: {nil, []api.ValueType{i32}, true},
	updater.ExportAlloc:      {[]api.ValueType{i32}, []api.ValueType{i32}, true},
	updater.ExportUpdate:     {[]api.ValueType{i32}, []api.ValueType{i32}, true},
	updater.ExportFree:       {[]api.ValueType{i32}, nil, false},
	updater.ExportStates:     {[]api.ValueType{i32}, []api.ValueType{i32}, false},
	updater.ExportInit:       {[]api.ValueType{i32}, []api.ValueType{i32}, false},
	updater.ExportConfigure:  {[]api.ValueType{i32, i32, i32}, []api.ValueType{i32}, false},
	updater.ExportInitialize: {nil, nil, false},
}

func checkExports(cm wazero.CompiledModule) error {
	fns := cm.ExportedFunctions()
	for _, name := range slices.Sorted(maps.Keys(abiExports)) {
		want := abiExports[name]
		f, ok := fns[name]
		if !ok {
			if want.required {
				return fmt.Errorf("no export %s (not a webkv updater, see package kvcore/updater)", name)
			}
			continue
		}
		if !slices.Equal(f.ParamTypes(), want.params) || !slices.Equal(f.ResultTypes(), want.results) {
			return fmt.Errorf("export %s has signature %s, the ABI says %s", name,
				sigString(f.ParamTypes(), f.ResultTypes()), sigString(want.params, want.results))
		}
	}
	if _, ok := cm.ExportedMemories()["memory"]; !ok {
		return errors.New(`no exported memory "memory"`)
	}
	if len(cm.ImportedMemories()) > 0 {
		return errors.New("imports a memory (a module must define its own)")
	}
	return nil
}

func sigString(p, r []api.ValueType) string {
	s := "("
	for i, t := range p {
		if i > 0 {
			s += ", "
		}
		s += api.ValueTypeName(t)
	}
	s += ")"
	if len(r) > 0 {
		s += " -> "
		for i, t := range r {
			if i > 0 {
				s += ", "
			}
			s += api.ValueTypeName(t)
		}
	}
	return s
}

// Load implements updater.Loader: it checks and compiles m (or takes the
// compiled module from the cache), instantiates it, runs _initialize and
// webkv_configure, and checks the ABI version.
func (h *Host) Load(ctx context.Context, m *updater.Module) (updater.Instance, error) {
	if len(m.Config) > updater.MaxConfig {
		return nil, fmt.Errorf("%w: config of %d bytes is above the limit of %d", updater.ErrBadModule, len(m.Config), updater.MaxConfig)
	}
	c, err := h.acquire(ctx, m.Code)
	if err != nil {
		return nil, err
	}
	in, err := h.instantiate(ctx, c, m.Config)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		in.Close()
		return nil, fmt.Errorf("sandbox: %w", updater.ErrClosed)
	}
	h.live[in] = true
	h.mu.Unlock()
	return in, nil
}
