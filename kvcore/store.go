package kvcore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/internal/engine"
	"github.com/webkv/webkv/kvcore/internal/optstate"
	"github.com/webkv/webkv/kvcore/optimizer"
	"github.com/webkv/webkv/kvcore/transport"
	"github.com/webkv/webkv/kvcore/updater"
)

// Updater is MXNet's updater: called once per key per push with the merged
// (summed) value; it updates stored in place. The arrays are views valid only
// during the call; they live on the store's backend.
type Updater func(key Key, merged, stored *Array) error

type storeKind uint8

const (
	kindLocal storeKind = iota
	kindDevice
	kindDist
)

// Options configure Create; nil means the defaults of every field.
type Options struct {
	// Backend is where a "device" or "dist_device_sync" store reduces and
	// updates, e.g. the WebGPU backend of package shaders. Without one they
	// run on a CPU backend of their own (MXNet's device store on CPU
	// contexts). The other types always reduce on the CPU: they take a
	// *compute.CPU here (one configured by the caller) and refuse any other.
	Backend compute.Backend
	// Transport connects a dist store to its parameter servers (package
	// relay, or package psm/inproc in tests; transport.Shards combines the
	// transports of a sharded job); dist types need one, the others refuse
	// one.
	Transport transport.Transport
	// Events, if set, receives a dist store's events (see Event) on a
	// goroutine of the store's; local and device stores have none.
	Events func(Event)
	// Updaters runs the custom updater modules of a local or device store
	// (SetUpdaterModule) in-process: package sandbox's Host. Dist
	// stores send modules to their servers and need none.
	Updaters updater.Loader
}

// Store is a KVStore. Its methods are safe for concurrent use. A store owns
// the goroutines that run its operations; Close stops them.
type Store struct {
	typ   string
	kind  storeKind
	async bool
	be    compute.Backend
	dev   Device                // where the views an Updater gets live
	rs    compute.ReduceStepper // be's fused reduce+step, if it has one
	fl    compute.Flusher       // be's Flush, if it queues work
	run   *engine.Runner
	rem   remote
	// callWorkers is how many goroutines may prepare a dist list call of
	// several operations (queueDistCall); 0: GOMAXPROCS. Tests set it.
	callWorkers int

	mu        sync.RWMutex
	keys      map[Key]*entry
	dense     []keyHot // int keys from 0 up, by key: lookup's fast path (store_keys.go)
	keyKind   int8     // 0 unset, 1 int, 2 string
	nextStr   int
	updater   Updater
	module    *moduleRun     // custom updater module (store_module.go)
	loader    updater.Loader // Options.Updaters
	opt       *optimizer.Spec
	optJSON   []byte
	numUpdate int
	comp      compute.Compression
	closed    bool
}

// entry is one key: its stored value and the scratch its operations reuse.
// Operations on one key are serialized by v, so the scratch needs no lock.
type entry struct {
	key    Key
	name   string // key.Name(), as optimizer specs name keys
	id     int
	shape  []int
	n      int
	v      *engine.Var
	stored compute.Buffer // nil in dist stores: the server holds the value
	merge  compute.Buffer
	stage  []compute.Buffer // inputs copied from other backends, by input position
	deq    []compute.Buffer // dequantized inputs (device compression)
	resid  []compute.Buffer // compression residuals, by input position
	packed []compute.Buffer
	ins    []compute.Buffer
	slot   optstate.Slot // optimizer states
	host   []float32     // dist: value as sent or received
	hostP  []float32     // dist: packed words as sent
	hostIn []float32     // dist: value as pulled
	mview  Array
	sview  Array
	rows   *rowScratch // row-sparse scratch (rowsparse.go)
}

// Create returns a store of type typ: "local" (aliases "local_update_cpu",
// "local_allreduce_cpu"), "device" (alias "local_allreduce_device"),
// "dist_sync", "dist_async", "dist_device_sync" ("dist_sync_device"). Type
// returns the name as given, lower-cased. ctx bounds the connection set-up
// of a dist store; opts may be nil.
func Create(ctx context.Context, typ string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	name := strings.ToLower(typ)
	s := &Store{typ: name, keys: map[Key]*entry{}}
	switch name {
	case "local", "local_update_cpu", "local_allreduce_cpu":
		s.kind = kindLocal
	case "device", "local_allreduce_device":
		s.kind = kindDevice
	case "dist", "dist_sync", "dist_async", "dist_device_sync", "dist_sync_device", "dist_async_device":
		s.kind = kindDist
		s.async = strings.Contains(name, "async")
	case "nccl", "horovod", "byteps", "teststore":
		return nil, fmt.Errorf("kvcore: create %q: %w", typ, ErrUnsupported)
	default:
		return nil, fmt.Errorf("kvcore: create %q: %w (want local, device, dist_sync, dist_async or dist_device_sync)", typ, ErrUnknownType)
	}
	device := s.kind == kindDevice || strings.Contains(name, "device")
	switch {
	case o.Backend != nil && !device && !isCPU(o.Backend):
		return nil, fmt.Errorf("kvcore: create %q: this type reduces on the CPU; Options.Backend may only be a *compute.CPU: %w", typ, ErrUnsupported)
	case o.Transport != nil && s.kind != kindDist:
		return nil, fmt.Errorf("kvcore: create %q: Options.Transport is for dist types: %w", typ, ErrUnsupported)
	case o.Transport == nil && s.kind == kindDist:
		return nil, fmt.Errorf("kvcore: create %q: %w", typ, ErrNoTransport)
	}
	s.loader = o.Updaters
	s.be, s.dev = o.Backend, CPU(0)
	if s.be == nil {
		s.be = compute.NewCPU(nil)
	} else if !isCPU(s.be) {
		s.dev = GPU(0, s.be)
	}
	if s.kind == kindDist {
		r, err := newRemote(ctx, name, s.async, o.Transport, o.Events)
		if err != nil {
			return nil, fmt.Errorf("kvcore: create %q: %w", typ, err)
		}
		s.rem = r
	}
	// Optional capabilities, found once so a push asserts nothing.
	s.rs, _ = s.be.(compute.ReduceStepper)
	s.fl, _ = s.be.(compute.Flusher)
	s.run = engine.NewRunner()
	return s, nil
}

// Type is the name the store was created with, lower-cased.
func (s *Store) Type() string { return s.typ }

// Backend is where the store reduces and updates values.
func (s *Store) Backend() compute.Backend { return s.be }

// Rank is this worker's rank: 0 unless dist.
func (s *Store) Rank() int {
	if s.rem != nil {
		return s.rem.rank()
	}
	return 0
}

// NumWorkers is the number of workers: 1 unless dist.
func (s *Store) NumWorkers() int {
	if s.rem != nil {
		return s.rem.numWorkers()
	}
	return 1
}

// IsCapable reports whether the store can do capability; the only one known
// is "optimizer" (updates run in the store).
func (s *Store) IsCapable(capability string) (bool, error) {
	if strings.ToLower(capability) == "optimizer" {
		return true, nil
	}
	return false, fmt.Errorf("kvcore: is capable %q: %w", capability, ErrBadCapability)
}

// checkOpen fails with ErrClosed once Close began.
func (s *Store) checkOpen(op string) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("kvcore: %s: %w", op, ErrClosed)
	}
	return nil
}

// lookup returns the entry of k, checking the key kind. The caller holds
// s.mu (read) and has checked that s is open.
func (s *Store) lookup(op string, k Key) (*entry, error) {
	if e := s.denseEntry(k); e != nil {
		return e, nil
	}
	if e, ok := s.keys[k]; ok {
		return e, nil
	}
	if s.keyKind != 0 && s.keyKind != keyKindOf(k) {
		return nil, fmt.Errorf("kvcore: %s key %v: %w", op, k, ErrMixedKeys)
	}
	return nil, fmt.Errorf("kvcore: %s key %v: %w", op, k, ErrUnknownKey)
}

func keyKindOf(k Key) int8 {
	if k.isStr {
		return 2
	}
	return 1
}

func checkArrays(op string, k Key, e *entry, arrs []*Array, what string) error {
	if len(arrs) == 0 {
		return fmt.Errorf("kvcore: %s key %v: no %s given: %w", op, k, what, ErrNilArray)
	}
	for i, a := range arrs {
		if a == nil || a.buf == nil {
			return fmt.Errorf("kvcore: %s key %v: %s %d: %w", op, k, what, i, ErrNilArray)
		}
		if !a.sameShape(e.shape) {
			return fmt.Errorf("kvcore: %s key %v: %s %d has shape %v, stored %v: %w", op, k, what, i, a.shape, e.shape, ErrShapeMismatch)
		}
	}
	return nil
}

// compatible reports whether buffers of backend x can be used by backend
// y: the same backend, or any two CPU backends (their buffers are plain
// memory).
func compatible(x, y compute.Backend) bool {
	return x == y || isCPU(x) && isCPU(y)
}

func isCPU(be compute.Backend) bool {
	_, ok := be.(*compute.CPU)
	return ok
}

// Init creates key with a copy of value. In a dist store every worker calls
// it and rank 0's value wins; it returns once the key exists for all.
// Initializing a key twice is an error.
func (s *Store) Init(ctx context.Context, key Key, value *Array) error {
	return s.InitList(ctx, []Key{key}, []*Array{value})
}

// InitList initializes several keys; values[i] is the value of keys[i].
func (s *Store) InitList(ctx context.Context, keys []Key, values []*Array) error {
	if len(keys) != len(values) {
		return fmt.Errorf("kvcore: init: %d keys but %d values", len(keys), len(values))
	}
	entries := make([]*entry, len(keys))
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("kvcore: init: %w", ErrClosed)
	}
	kind := s.keyKind
	for i, k := range keys {
		v := values[i]
		if v == nil || v.buf == nil {
			s.mu.Unlock()
			return fmt.Errorf("kvcore: init key %v: %w", k, ErrNilArray)
		}
		if kind != 0 && kind != keyKindOf(k) {
			s.mu.Unlock()
			return fmt.Errorf("kvcore: init key %v: %w", k, ErrMixedKeys)
		}
		kind = keyKindOf(k)
		if _, dup := s.keys[k]; dup {
			s.mu.Unlock()
			return fmt.Errorf("kvcore: init key %v: %w", k, ErrDuplicateInit)
		}
	}
	if _, dup := sameKeys(keys); dup != nil {
		for i, d := range dup {
			if d {
				s.mu.Unlock()
				return fmt.Errorf("kvcore: init key %v: given twice: %w", keys[i], ErrDuplicateInit)
			}
		}
	}
	// Allocate before publishing, so a failure leaves the store unchanged.
	for i, k := range keys {
		e := &entry{key: k, name: k.Name(), shape: values[i].Shape(), n: values[i].n, v: new(engine.Var)}
		if s.kind != kindDist {
			b, err := s.be.Alloc(e.n)
			if err != nil {
				for _, d := range entries[:i] {
					s.be.Free(d.stored)
				}
				s.mu.Unlock()
				return fmt.Errorf("kvcore: init key %v: %w", k, err)
			}
			e.stored = b
		}
		entries[i] = e
	}
	s.keyKind = kind
	for _, e := range entries {
		if e.key.isStr {
			e.id = s.nextStr
			s.nextStr++
		} else {
			e.id = e.key.i
		}
		s.setKey(e)
	}
	if s.kind != kindDist {
		for i, e := range entries {
			o := newOp(s, runInit, 0)
			o.e = e
			o.arrs = append(o.arrs, values[i])
			o.use(e.v, true)
			o.use(values[i].v, false)
			s.run.Push(&o.eng)
		}
	}
	s.mu.Unlock()

	if s.kind == kindDist {
		// Every key's init at once (they travel pipelined; MXNet's init
		// waits for each in turn).
		hosts, shapes := make([][]float32, len(entries)), make([][]int, len(entries))
		for i, e := range entries {
			hosts[i], shapes[i] = make([]float32, e.n), e.shape
			if err := values[i].CopyTo(ctx, hosts[i]); err != nil { // its errors name themselves
				s.mu.Lock()
				for _, f := range entries {
					s.delKey(f.key)
				}
				s.mu.Unlock()
				return err
			}
		}
		var first error
		errs := s.rem.initList(ctx, keys, shapes, hosts)
		s.mu.Lock()
		for i, err := range errs {
			if err != nil {
				// Forget the keys not created, so the caller can retry.
				s.delKey(entries[i].key)
				if first == nil {
					first = fmt.Errorf("kvcore: init key %v: %w", entries[i].key, err)
				}
			}
		}
		s.mu.Unlock()
		return first
	}
	for _, e := range entries {
		if err := e.v.Wait(ctx); err != nil {
			return err
		}
	}
	return nil
}

func runInit(o *op) (bool, error) {
	s, e, a := o.s, o.e, o.arrs[0]
	if err := s.transfer(e, s.be, e.stored, a.be, a.buf); err != nil {
		return false, fmt.Errorf("kvcore: init key %v: %w", e.key, err)
	}
	return false, nil
}

// transfer copies src (on sb) into dst (on db), through host memory when the
// backends differ.
func (s *Store) transfer(e *entry, db compute.Backend, dst compute.Buffer, sb compute.Backend, src compute.Buffer) error {
	if compatible(sb, db) {
		return s.be.Copy(dst, src) // s.be is db or sb, or both are CPUs as it is
	}
	if cb, ok := src.(*compute.CPUBuffer); ok {
		return db.Write(dst, 0, cb.Float32s()[:e.n])
	}
	if cb, ok := dst.(*compute.CPUBuffer); ok {
		return sb.Read(src, 0, cb.Float32s()[:e.n])
	}
	if len(e.host) < e.n {
		e.host = make([]float32, e.n)
	}
	if err := sb.Read(src, 0, e.host[:e.n]); err != nil {
		return err
	}
	return db.Write(dst, 0, e.host[:e.n])
}

// Push queues a push of values (one per device) to key at priority 0:
// their sum replaces the stored value, or goes through the updater or
// optimizer. It returns once queued; errors found later surface in WaitAll
// (and in Wait of the arrays the push writes).
func (s *Store) Push(key Key, values ...*Array) error {
	return s.queue1("push", key, orEmpty(values), nil)
}

// Pull queues a copy of key's value into every one of outs.
func (s *Store) Pull(key Key, outs ...*Array) error {
	return s.queue1("pull", key, nil, orEmpty(outs))
}

// PushPull pushes values and writes the result back into them (MXNet's
// pushpull without out=), in one operation.
func (s *Store) PushPull(key Key, values ...*Array) error {
	values = orEmpty(values)
	return s.queue1("pushpull", key, values, values)
}

// PushPullTo pushes values and pulls the result into outs (MXNet's
// pushpull with out=) in one operation.
func (s *Store) PushPullTo(key Key, values []*Array, outs ...*Array) error {
	return s.queue1("pushpull", key, orEmpty(values), orEmpty(outs))
}

// orEmpty makes a missing list an empty one, so that a call without arrays
// is told apart from a pull (nil values) or a push (nil outputs).
func orEmpty(a []*Array) []*Array {
	if a == nil {
		return []*Array{}
	}
	return a
}

// PushList pushes several keys at one priority (higher runs first);
// values[i] are the values of keys[i]. Values of a key given more than once
// are summed.
func (s *Store) PushList(keys []Key, values [][]*Array, priority int) error {
	if len(keys) != len(values) {
		return fmt.Errorf("kvcore: push: %d keys but %d value lists", len(keys), len(values))
	}
	return s.queueList("push", keys, values, nil, priority)
}

// PullList pulls several keys at one priority; outs[i] receive keys[i].
func (s *Store) PullList(keys []Key, outs [][]*Array, priority int) error {
	if len(keys) != len(outs) {
		return fmt.Errorf("kvcore: pull: %d keys but %d output lists", len(keys), len(outs))
	}
	return s.queueList("pull", keys, nil, outs, priority)
}

// PushPullList is PushPull for several keys; outs may be nil (in place).
// As in MXNet, a local or device store queues every push of the list
// before any of its pulls, so an array that is both a value and an output
// of several keys is read by all pushes first; a dist store pushes and
// pulls key by key, as MXNet's dist store does (see the package doc).
func (s *Store) PushPullList(keys []Key, values, outs [][]*Array, priority int) error {
	if outs == nil {
		outs = values
	}
	if len(keys) != len(values) || len(keys) != len(outs) {
		return fmt.Errorf("kvcore: pushpull: %d keys, %d value lists, %d output lists", len(keys), len(values), len(outs))
	}
	return s.queueList("pushpull", keys, values, outs, priority)
}

// queueList checks every key and array of a list call, then queues one
// operation per distinct key (values and outputs of repeated keys go to
// the key's one operation).
func (s *Store) queueList(op string, keys []Key, values, outs [][]*Array, prio int) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("kvcore: %s: %w", op, ErrClosed)
	}
	if s.kind == kindDist {
		// Many keys per engine operation, sent together (store_distcall.go).
		return s.queueDistCall(op, keys, values, outs, prio)
	}
	// Validate everything first: nothing is queued if any part is bad.
	for i, k := range keys {
		e, err := s.lookup(op, k)
		if err != nil {
			return err
		}
		if values != nil {
			if err := checkArrays(op, k, e, values[i], "value"); err != nil {
				return err
			}
		}
		if outs != nil {
			if err := checkArrays(op, k, e, outs[i], "output"); err != nil {
				return err
			}
		}
	}
	// MXNet's order for local and device pushpull: all pushes, then all
	// pulls. A dist store keeps one push-and-pull per key.
	split := values != nil && outs != nil && s.kind != kindDist
	next, dup := sameKeys(keys)
	for pass := range 2 {
		if pass == 1 && !split {
			break
		}
		for i := range keys {
			if dup != nil && dup[i] {
				continue // summed into the op of its first occurrence
			}
			o := newOp(s, nil, prio)
			o.e = s.keys[keys[i]] // there: checked above, under the same lock
			if values != nil && !(split && pass == 1) {
				for j := i; j >= 0; j = next[j] {
					o.arrs = append(o.arrs, values[j]...)
					if next == nil {
						break
					}
				}
			}
			o.n = len(o.arrs)
			if outs != nil && !(split && pass == 0) {
				for j := i; j >= 0; j = next[j] {
					o.arrs = append(o.arrs, outs[j]...)
					if next == nil {
						break
					}
				}
			}
			s.queue(o, o.n > 0, len(o.arrs) > o.n)
		}
	}
	return nil
}

// sameKeys finds repeated keys in linear time: next[i] is the position of
// the next occurrence of keys[i] (-1: none), dup[i] whether an earlier
// position has the same key. Both are nil when no key repeats; then a
// short list allocates nothing (list calls of a training step don't).
func sameKeys(keys []Key) (next []int, dup []bool) {
	if len(keys) < 2 {
		return nil, nil
	}
	if len(keys) <= sameKeysScan && !repeats(keys) {
		return nil, nil
	}
	last := make(map[Key]int, len(keys))
	for i, k := range keys {
		if j, ok := last[k]; ok {
			if next == nil {
				next, dup = make([]int, len(keys)), make([]bool, len(keys))
				for x := range next {
					next[x] = -1
				}
			}
			next[j], dup[i] = i, true
		}
		last[k] = i
	}
	return next, dup
}

// sameKeysScan: up to this many keys, sameKeys first compares every pair
// (no map) and builds its tables only if a key repeats.
const sameKeysScan = 32

func repeats(keys []Key) bool {
	for i := 1; i < len(keys); i++ {
		if slices.Contains(keys[:i], keys[i]) {
			return true
		}
	}
	return false
}

func (s *Store) queue1(op string, key Key, values, outs []*Array) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("kvcore: %s key %v: %w", op, key, ErrClosed)
	}
	e, err := s.lookup(op, key)
	if err != nil {
		return err
	}
	if values != nil {
		if err := checkArrays(op, key, e, values, "value"); err != nil {
			return err
		}
	}
	if outs != nil {
		if err := checkArrays(op, key, e, outs, "output"); err != nil {
			return err
		}
	}
	o := newOp(s, nil, 0)
	o.e = e
	o.arrs = append(o.arrs, values...)
	o.n = len(values)
	o.arrs = append(o.arrs, outs...)
	s.queue(o, values != nil, outs != nil)
	return nil
}

// queue picks the operation's function and variables and hands it to the
// engine. o.arrs holds o.n inputs followed by the outputs. The caller holds
// s.mu (read), so Close cannot pass it.
func (s *Store) queue(o *op, push, pull bool) {
	switch {
	case s.kind == kindDist && push && pull:
		o.fn = runDistPushPull
	case s.kind == kindDist && push:
		o.fn = runDistPush
	case s.kind == kindDist:
		o.fn = runDistPull
	case push && pull:
		o.fn = runPushPull
	case push:
		o.fn = runPush
	default:
		o.fn = runPull
	}
	o.use(o.e.v, true)
	for i, a := range o.arrs {
		o.use(a.v, i >= o.n)
	}
	s.run.Push(&o.eng)
}

func runPush(o *op) (bool, error) {
	err := o.s.applyPush(o.e, o.arrs[:o.n])
	return false, o.s.flush(err, false)
}

func runPull(o *op) (bool, error) {
	err := o.s.copyOut(o.e, o.arrs[o.n:])
	return false, o.s.flush(err, o.s.outsOnBackend(o.arrs[o.n:]))
}

func runPushPull(o *op) (bool, error) {
	err := o.s.applyPush(o.e, o.arrs[:o.n])
	if err == nil {
		err = o.s.copyOut(o.e, o.arrs[o.n:])
	}
	return false, o.s.flush(err, o.s.outsOnBackend(o.arrs[o.n:]))
}

// outsOnBackend reports whether a pull wrote arrays that live on the
// store's (queueing) backend.
func (s *Store) outsOnBackend(outs []*Array) bool {
	if s.fl == nil {
		return false
	}
	for _, a := range outs {
		if a.be == s.be {
			return true
		}
	}
	return false
}

// flush submits the work queued on a backend that queues (see
// compute.Flusher) when the calling operation is the store's last
// unfinished one (so the pushes of one training step go out as one batch,
// even when they are chained through shared input arrays), or always when
// the operation wrote arrays of that backend. It returns err, or the
// flush's error if err is nil.
func (s *Store) flush(err error, always bool) error {
	if s.fl == nil {
		return err
	}
	if !always {
		always = s.run.Pending() <= 1 // the calling operation is still counted
	}
	if always {
		if ferr := s.fl.Flush(); ferr != nil && err == nil {
			err = fmt.Errorf("kvcore: submitting queued work: %w", ferr)
		}
	}
	return err
}

func (s *Store) copyOut(e *entry, outs []*Array) error {
	for _, a := range outs {
		if err := s.transfer(e, a.be, a.buf, s.be, e.stored); err != nil {
			return fmt.Errorf("kvcore: pull key %v: %w", e.key, err)
		}
	}
	return nil
}

func growBuffers(be compute.Backend, bs []compute.Buffer, i, n int) ([]compute.Buffer, error) {
	for len(bs) <= i {
		bs = append(bs, nil)
	}
	if bs[i] == nil {
		b, err := be.Alloc(n)
		if err != nil {
			return bs, err
		}
		bs[i] = b
	}
	return bs, nil
}

// gather brings the inputs onto the store's backend (and, in a device store
// with compression, through quantize and dequantize, each input with its own
// residual as MXNet does) and returns them.
func (s *Store) gather(e *entry, vals []*Array, perInputCompression bool) ([]compute.Buffer, error) {
	var err error
	e.ins = e.ins[:0]
	for i, a := range vals {
		b := a.buf
		if !compatible(a.be, s.be) {
			if e.stage, err = growBuffers(s.be, e.stage, i, e.n); err != nil {
				return nil, err
			}
			if err = s.transfer(e, s.be, e.stage[i], a.be, a.buf); err != nil {
				return nil, err
			}
			b = e.stage[i]
		}
		if perInputCompression {
			c := s.comp
			if e.resid, err = growBuffers(s.be, e.resid, i, e.n); err != nil {
				return nil, err
			}
			if e.packed, err = growBuffers(s.be, e.packed, i, c.Kind.PackedLen(e.n)); err != nil {
				return nil, err
			}
			if e.deq, err = growBuffers(s.be, e.deq, i, e.n); err != nil {
				return nil, err
			}
			if err = s.be.Quantize(c, b, e.resid[i], e.packed[i]); err != nil {
				return nil, err
			}
			if err = s.be.Dequantize(c, e.packed[i], e.deq[i]); err != nil {
				return nil, err
			}
			b = e.deq[i]
		}
		e.ins = append(e.ins, b)
	}
	return e.ins, nil
}

// merged reduces the inputs into one buffer (the input itself if there is
// only one).
func (s *Store) merged(e *entry, ins []compute.Buffer) (compute.Buffer, error) {
	if len(ins) == 1 {
		return ins[0], nil
	}
	if e.merge == nil {
		b, err := s.be.Alloc(e.n)
		if err != nil {
			return nil, err
		}
		e.merge = b
	}
	return e.merge, s.be.Reduce(e.merge, ins, 1)
}

func (s *Store) applyPush(e *entry, vals []*Array) error {
	s.mu.RLock()
	opt, upd, comp, mod := s.opt, s.updater, s.comp, s.module
	s.mu.RUnlock()
	ins, err := s.gather(e, vals, comp.Kind != compute.CompressNone)
	if err != nil {
		return fmt.Errorf("kvcore: push key %v: %w", e.key, err)
	}
	switch {
	case opt != nil && s.rs != nil && len(ins) > 1:
		// Fused: the sum never goes to memory.
		var kind compute.OptKind
		if kind, err = s.prepareStep(e, opt); err == nil {
			err = s.rs.ReduceStep(kind, &e.slot.Params, e.stored, ins, 1, e.slot.States)
		}
	case opt != nil:
		var m compute.Buffer
		var kind compute.OptKind
		if m, err = s.merged(e, ins); err == nil {
			if kind, err = s.prepareStep(e, opt); err == nil {
				err = s.be.Step(kind, &e.slot.Params, e.stored, m, e.slot.States)
			}
		}
	case mod != nil:
		var m compute.Buffer
		if m, err = s.merged(e, ins); err == nil {
			err = s.moduleStep(mod, e, m, len(ins))
		}
	case upd != nil:
		var m compute.Buffer
		if m, err = s.merged(e, ins); err != nil {
			break
		}
		e.mview = Array{shape: e.shape, n: e.n, dev: s.dev, be: s.be, buf: m}
		e.sview = Array{shape: e.shape, n: e.n, dev: s.dev, be: s.be, buf: e.stored}
		if err := upd(e.key, &e.mview, &e.sview); err != nil {
			return fmt.Errorf("kvcore: push key %v: updater: %w", e.key, err)
		}
	case len(ins) == 1:
		err = s.be.Copy(e.stored, ins[0])
	default:
		// Assign: the sum goes straight into the stored value.
		err = s.be.Reduce(e.stored, ins, 1)
	}
	if err != nil {
		return fmt.Errorf("kvcore: push key %v: %w", e.key, err)
	}
	return nil
}

// prepareStep counts the update of e and gets its parameters and states
// ready (optstate.Slot.Prepare); the store's update count follows the
// largest count of any key, as MXNet's num_update does.
func (s *Store) prepareStep(e *entry, opt *optimizer.Spec) (compute.OptKind, error) {
	e.slot.T++
	s.mu.Lock()
	s.numUpdate = max(s.numUpdate, e.slot.T)
	num := s.numUpdate
	s.mu.Unlock()
	return e.slot.Prepare(s.be, opt, e.name, e.n, num)
}

// Broadcast initializes key with value (rank 0's, in dist) and pulls it into
// outs: MXNet's broadcast. Like there, a key can be broadcast once.
func (s *Store) Broadcast(ctx context.Context, key Key, value *Array, outs ...*Array) error {
	return s.BroadcastList(ctx, []Key{key}, []*Array{value}, [][]*Array{outs})
}

// BroadcastList is Broadcast for several keys: values[i] initializes
// keys[i] and outs[i] receive it (outs may be nil: no pulls).
func (s *Store) BroadcastList(ctx context.Context, keys []Key, values []*Array, outs [][]*Array) error {
	if outs != nil && len(outs) != len(keys) {
		return fmt.Errorf("kvcore: broadcast: %d keys but %d output lists", len(keys), len(outs))
	}
	if err := s.InitList(ctx, keys, values); err != nil {
		return err
	}
	var ks []Key
	var os [][]*Array
	for i, k := range keys {
		if outs != nil && len(outs[i]) > 0 {
			ks, os = append(ks, k), append(os, outs[i])
		}
	}
	if len(ks) == 0 {
		return nil
	}
	if err := s.PullList(ks, os, 0); err != nil {
		return err
	}
	for _, l := range os {
		for _, o := range l {
			if err := o.Wait(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// SetUpdater installs fn as the updater of a local or device store (dist
// stores take SetOptimizer or SetUpdaterModule: no Go code travels to a
// server). It replaces an optimizer or updater module set before. It waits
// for the queued operations first; if one of them failed, it returns that
// error (as WaitAll does) and changes nothing.
func (s *Store) SetUpdater(ctx context.Context, fn Updater) error {
	if err := s.checkOpen("set updater"); err != nil {
		return err
	}
	if s.kind == kindDist {
		return fmt.Errorf("kvcore: set updater on %q: %w (use SetOptimizer or SetUpdaterModule)", s.typ, ErrUnsupported)
	}
	if err := s.WaitAll(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("kvcore: set updater: %w", ErrClosed)
	}
	s.updater, s.opt, s.optJSON = fn, nil, nil
	s.dropModule()
	return nil
}

// SetOptimizer makes every later push run opt on the stored value (in dist
// stores, on the servers, which receive opt's JSON spec). Optimizer states
// start fresh, as with a new MXNet updater. It waits for the queued
// operations first; if one of them failed, it returns that error (as
// WaitAll does) and changes nothing.
func (s *Store) SetOptimizer(ctx context.Context, opt *optimizer.Spec) error {
	if err := s.checkOpen("set optimizer"); err != nil {
		return err
	}
	if err := opt.Validate(); err != nil {
		return fmt.Errorf("kvcore: set optimizer: %w", err)
	}
	js, err := json.Marshal(opt)
	if err != nil {
		return fmt.Errorf("kvcore: set optimizer: %w", err)
	}
	if err := s.WaitAll(ctx); err != nil {
		return err
	}
	if s.rem != nil {
		if err := s.rem.setOptimizer(ctx, js); err != nil {
			return fmt.Errorf("kvcore: set optimizer: %w", err)
		}
	}
	cp := opt.Clone() // the caller may change opt afterwards
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("kvcore: set optimizer: %w", ErrClosed)
	}
	s.opt, s.optJSON, s.updater, s.numUpdate = cp, js, nil, 0
	s.dropModule()
	for _, e := range s.keys {
		e.slot.Reset(s.be)
	}
	return nil
}

// SetGradientCompression enables 2bit or 1bit compression of pushed
// gradients with error feedback. Only device and dist stores compress, as in
// MXNet; it can be set once.
//
// With an optimizer, mind the threshold: 2bit sends each element as 0 or
// ±threshold and keeps the rest in a residual, so the optimizer sees a
// sparse, bursty gradient of magnitude threshold. MXNet's default of 0.5
// suits SGD on gradients of that scale; with Adam (which divides by the
// root of the gradients' second moment, so every burst is a full step)
// and gradients much smaller than the threshold, training can diverge
// (issue 11 saw an MNIST loss go from 461 to 547). Choose a threshold near
// the gradients' typical magnitude, or SGD with momentum. The residuals
// are part of the training state: SaveOptimizerStates writes them and
// LoadOptimizerStates restores them.
func (s *Store) SetGradientCompression(ctx context.Context, c compute.Compression) error {
	if err := s.checkOpen("set gradient compression"); err != nil {
		return err
	}
	if s.kind == kindLocal {
		return fmt.Errorf("kvcore: set gradient compression on %q: %w", s.typ, ErrUnsupported)
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("kvcore: set gradient compression %v: %w: %w", c, ErrBadCompression, err)
	}
	if c.Kind == compute.CompressNone {
		return fmt.Errorf("kvcore: set gradient compression: %w: want 2bit or 1bit", ErrBadCompression)
	}
	s.mu.Lock()
	if s.comp.Kind != compute.CompressNone && s.comp != c {
		s.mu.Unlock()
		return fmt.Errorf("kvcore: set gradient compression: already set to %v: %w", s.comp, ErrBadCompression)
	}
	s.mu.Unlock()
	if s.rem != nil {
		if err := s.rem.setCompression(ctx, c); err != nil {
			return fmt.Errorf("kvcore: set gradient compression: %w", err)
		}
	}
	s.mu.Lock()
	s.comp = c
	s.mu.Unlock()
	return nil
}

// Barrier waits until every worker reached it (dist); local stores return at
// once. Like MXNet's, it does not wait for queued pushes and pulls.
func (s *Store) Barrier(ctx context.Context) error {
	if err := s.checkOpen("barrier"); err != nil {
		return err
	}
	if s.rem == nil {
		return nil
	}
	if err := s.rem.barrier(ctx); err != nil {
		return fmt.Errorf("kvcore: barrier: %w", err)
	}
	return nil
}

// SendCommandToServers sends a command to every server and returns when all
// handled it; local stores ignore it.
func (s *Store) SendCommandToServers(ctx context.Context, head int, body []byte) error {
	if err := s.checkOpen("send command"); err != nil {
		return err
	}
	if s.rem == nil {
		return nil
	}
	if err := s.rem.command(ctx, head, body); err != nil {
		return fmt.Errorf("kvcore: send command %d: %w", head, err)
	}
	return nil
}

// WaitAll waits for every queued operation of the store and returns the first
// error among those that failed since the last WaitAll.
func (s *Store) WaitAll(ctx context.Context) error {
	return s.run.WaitAll(ctx)
}

// SaveOptimizerStates writes the optimizer states of every key (and, with
// dumpOptimizer, the optimizer spec) to w in webkv's states format. It
// waits for the queued operations first; if one of them failed, it returns
// that error (as WaitAll does) and writes nothing.
func (s *Store) SaveOptimizerStates(ctx context.Context, w io.Writer, dumpOptimizer bool) error {
	if err := s.checkOpen("save optimizer states"); err != nil {
		return err
	}
	if err := s.WaitAll(ctx); err != nil {
		return err
	}
	var snap *stateSnapshot
	if s.rem != nil {
		var err error
		if snap, err = s.rem.saveStates(ctx); err != nil {
			return fmt.Errorf("kvcore: save optimizer states: %w", err)
		}
	} else if s.mu.RLock(); s.module != nil {
		// (the read lock is held in this branch and the next)
		snap = s.moduleStates(dumpOptimizer)
		s.mu.RUnlock()
	} else {
		if s.opt == nil {
			s.mu.RUnlock()
			return fmt.Errorf("kvcore: save optimizer states: no optimizer set: %w", ErrBadStates)
		}
		snap = &stateSnapshot{NumUpdate: int64(s.numUpdate)}
		if dumpOptimizer {
			snap.Optimizer = slices.Clone(s.optJSON)
		}
		for _, e := range s.sortedEntries() {
			st, err := e.slot.Read(s.be, e.n)
			if err != nil {
				s.mu.RUnlock()
				return fmt.Errorf("kvcore: save optimizer states: key %v: %w", e.key, err)
			}
			snap.Keys = append(snap.Keys, keyStates{Key: e.key, T: int64(e.slot.T), N: e.n, States: st})
		}
		s.mu.RUnlock()
	}
	if !dumpOptimizer {
		snap.Optimizer = nil
	}
	if err := s.addResiduals(snap); err != nil {
		return fmt.Errorf("kvcore: save optimizer states: %w", err)
	}
	if err := encodeStates(w, snap); err != nil {
		return fmt.Errorf("kvcore: save optimizer states: %w", err)
	}
	return nil
}

// LoadOptimizerStates reads states written by SaveOptimizerStates. The whole
// input is checked before anything changes: on error the store is as before.
func (s *Store) LoadOptimizerStates(ctx context.Context, r io.Reader) error {
	if err := s.checkOpen("load optimizer states"); err != nil {
		return err
	}
	snap, err := decodeStates(r)
	if err != nil {
		return fmt.Errorf("kvcore: load optimizer states: %w", err)
	}
	if err := s.checkResiduals(snap); err != nil {
		return fmt.Errorf("kvcore: load optimizer states: %w", err)
	}
	if err := s.loadStates(ctx, snap); err != nil {
		return err
	}
	return s.installResiduals(snap)
}

// loadStates installs the optimizer states of snap (LoadOptimizerStates).
func (s *Store) loadStates(ctx context.Context, snap *stateSnapshot) error {
	var err error
	var opt *optimizer.Spec
	marker := updater.IsMarker(snap.Optimizer)
	if snap.Optimizer != nil && !marker {
		if opt, err = optimizer.Parse(snap.Optimizer); err != nil {
			return fmt.Errorf("kvcore: load optimizer states: %w: %w", ErrBadStates, err)
		}
	}
	if err := s.WaitAll(ctx); err != nil {
		return err
	}
	if s.rem != nil {
		if err := s.rem.loadStates(ctx, snap); err != nil {
			return fmt.Errorf("kvcore: load optimizer states: %w", err)
		}
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("kvcore: load optimizer states: %w", ErrClosed)
	}
	if marker || (s.module != nil && opt == nil) {
		return s.loadModuleStates(ctx, snap)
	}
	if opt == nil {
		opt = s.opt
	}
	if opt == nil {
		return fmt.Errorf("kvcore: load optimizer states: no optimizer set and none in the file: %w", ErrBadStates)
	}
	ls := make([]optstate.Load, 0, len(snap.Keys))
	for _, ks := range snap.Keys {
		e, ok := s.keys[ks.Key]
		if !ok {
			return fmt.Errorf("kvcore: load optimizer states: key %v: %w", ks.Key, ErrUnknownKey)
		}
		if ks.N != e.n {
			return fmt.Errorf("kvcore: load optimizer states: key %v has %d values in the file, %d stored: %w", ks.Key, ks.N, e.n, ErrBadStates)
		}
		ls = append(ls, optstate.Load{Slot: &e.slot, Key: e.name, Label: e.key.String(), N: e.n, T: ks.T, States: ks.States})
	}
	all := make([]*optstate.Slot, 0, len(s.keys))
	for _, e := range s.keys {
		all = append(all, &e.slot)
	}
	if err := optstate.Install(s.be, opt, snap.NumUpdate, ls, all); err != nil {
		return fmt.Errorf("kvcore: load optimizer states: %w", err)
	}
	if snap.Optimizer != nil {
		// Marshal of a parsed spec cannot fail: it holds only numbers,
		// strings and maps of numbers.
		js, _ := json.Marshal(opt)
		s.opt, s.optJSON, s.updater = opt, js, nil
		s.dropModule()
	}
	s.numUpdate = int(snap.NumUpdate)
	return nil
}

func (s *Store) sortedEntries() []*entry {
	es := make([]*entry, 0, len(s.keys))
	for _, e := range s.keys {
		es = append(es, e)
	}
	// Init order for string keys, numeric order for int keys.
	slices.SortFunc(es, func(a, b *entry) int { return cmp.Compare(a.id, b.id) })
	return es
}

// closeDrain bounds how long Close waits for queued operations before it
// closes the dist link under them (which fails what still waits on the
// network), and then how long it waits for the rest.
const closeDrain = 10 * time.Second

// Close finishes the store: later calls fail with ErrClosed, queued
// operations run to their end (at most about 10 s; then the dist link is
// closed under what still waits on the network, and those operations fail
// with ErrClosed), the dist link closes, the store's goroutines stop and
// its buffers are freed. It returns the first error of the operations it
// waited for, or of closing the link. A second Close does nothing.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true // no operation is queued after this (they hold s.mu)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), closeDrain)
	err := s.run.WaitAll(ctx)
	stuck := ctx.Err() != nil && err == ctx.Err()
	cancel()
	if stuck {
		err = nil
	}
	if s.rem != nil {
		if cerr := s.rem.close(); cerr != nil && err == nil {
			err = fmt.Errorf("kvcore: close: %w", cerr)
		}
	}
	if stuck {
		// What is left no longer waits on the network.
		ctx, cancel := context.WithTimeout(context.Background(), closeDrain)
		werr := s.run.WaitAll(ctx)
		stuck = ctx.Err() != nil && werr == ctx.Err()
		cancel()
		if stuck {
			// An updater or backend call that does not return: the
			// store's buffers stay allocated and its workers running.
			return fmt.Errorf("kvcore: close: operations still running after %v", 2*closeDrain)
		}
		if err == nil {
			err = werr
		}
	}
	s.run.Close()
	s.mu.Lock()
	for _, e := range s.keys {
		e.slot.Reset(s.be)
		if e.rows != nil {
			e.rows.free(s.be)
		}
		for _, l := range [][]compute.Buffer{{e.stored, e.merge}, e.stage, e.deq, e.resid, e.packed} {
			for _, b := range l {
				if b != nil {
					s.be.Free(b)
				}
			}
		}
	}
	s.keys, s.dense = map[Key]*entry{}, nil
	s.dropModule()
	s.mu.Unlock()
	if err != nil && errors.Is(err, ErrClosed) {
		return nil
	}
	return err
}
