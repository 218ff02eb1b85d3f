package updater

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ABIVersion is the version of the module ABI this package describes.
const ABIVersion = 1

// Names of the functions a module exports (see the package doc).
const (
	ExportABIVersion = "webkv_abi_version"
	ExportAlloc      = "webkv_alloc"
	ExportFree       = "webkv_free"
	ExportUpdate     = "webkv_update"
	ExportStates     = "webkv_states"
	ExportInit       = "webkv_init"
	ExportConfigure  = "webkv_configure"
	ExportInitialize = "_initialize"
)

// Offsets of the call block's fields (see the package doc).
const (
	OffABI     = 0
	OffSize    = 4
	OffKey     = 8
	OffFlags   = 16
	OffN       = 20
	OffName    = 24
	OffNameLen = 28
	OffRecv    = 32
	OffStored  = 36
	OffStates  = 40
	OffNStates = 44
	OffT       = 48
	OffOffset  = 52
	OffTotal   = 56
	OffWorkers = 60
	OffMsg     = 64
	OffMsgLen  = 68
	CallSize   = 128
)

// FlagStrKey is the call block's flag of a string key.
const FlagStrKey = 1

// Status values of webkv_update, webkv_init and webkv_configure.
const (
	StatusOK      = 0
	StatusRefused = 1 // this call failed; the module stays loaded
	StatusFatal   = 2 // the module is broken (any status other than 0 and 1)
)

// MaxStates is the most state arrays a key may have (the states file's
// and the wire's limit).
const MaxStates = 8

// MaxMessage is the most bytes of a module's error message that are read.
const MaxMessage = 1 << 10

// MaxConfig bounds Module.Config.
const MaxConfig = 64 << 10

// CommandHead is the command (kvcore.Store.SendCommandToServers head) that
// installs a module on the servers of a dist store: its body is
// Module.AppendBinary. MXNet's heads are 0 to 5.
const CommandHead = 16

// Errors of this package and of Loaders, tested with errors.Is.
var (
	// ErrBadModule: not a module this host can run (not WebAssembly, the
	// wrong ABI version, a missing export, a forbidden import, too big).
	ErrBadModule = errors.New("updater: bad module")
	// ErrRefused: the host's policy refuses the module (uploads are off,
	// or its hash is not allow-listed).
	ErrRefused = errors.New("updater: module refused")
	// ErrFailed: the module trapped, exited, returned a fatal status or
	// ran past its time or memory limit; it was unloaded.
	ErrFailed = errors.New("updater: module failed")
	// ErrClosed: the instance was closed.
	ErrClosed = errors.New("updater: instance closed")
)

// Hash is the SHA-256 of a module's code: modules are content-addressed.
type Hash [32]byte

// String is "sha256:" and the hash in hex.
func (h Hash) String() string { return "sha256:" + hex.EncodeToString(h[:]) }

// ParseHash reads a hash as String writes it, or bare hex.
func ParseHash(s string) (Hash, error) {
	var h Hash
	b, err := hex.DecodeString(strings.TrimPrefix(strings.TrimSpace(s), "sha256:"))
	if err != nil || len(b) != len(h) {
		return h, fmt.Errorf("updater: %q is not a SHA-256 hash (want sha256:<64 hex digits>)", s)
	}
	copy(h[:], b)
	return h, nil
}

// Module is an updater module and its configuration.
type Module struct {
	Code   []byte // the WebAssembly binary
	Config []byte // given to webkv_configure when the module loads; may be empty
}

// Hash is the SHA-256 of m.Code.
func (m *Module) Hash() Hash { return sum256(m.Code) }

// moduleMagic opens an encoded Module.
var moduleMagic = [4]byte{'W', 'K', 'U', 'M'}

// AppendBinary appends m's encoding to b: "WKUM", version byte 1, the
// config's length (uvarint) and bytes, then the code to the end.
func (m *Module) AppendBinary(b []byte) ([]byte, error) {
	if len(m.Config) > MaxConfig {
		return b, fmt.Errorf("%w: config of %d bytes is above the limit of %d", ErrBadModule, len(m.Config), MaxConfig)
	}
	b = append(b, moduleMagic[:]...)
	b = append(b, 1)
	b = binary.AppendUvarint(b, uint64(len(m.Config)))
	b = append(b, m.Config...)
	return append(b, m.Code...), nil
}

// DecodeModule reads what AppendBinary wrote. The Module aliases b. A code
// above maxCode bytes (maxCode > 0) is refused before anything else.
func DecodeModule(b []byte, maxCode int) (*Module, error) {
	if len(b) < 6 || [4]byte(b[:4]) != moduleMagic {
		return nil, fmt.Errorf("%w: not an encoded updater module (magic WKUM)", ErrBadModule)
	}
	if b[4] != 1 {
		return nil, fmt.Errorf("%w: module encoding version %d, this build reads 1", ErrBadModule, b[4])
	}
	n, k := binary.Uvarint(b[5:])
	if k <= 0 || n > MaxConfig || n > uint64(len(b)-5-k) {
		return nil, fmt.Errorf("%w: bad config length", ErrBadModule)
	}
	rest := b[5+k:]
	m := &Module{Config: rest[:n:n], Code: rest[n:]}
	if len(m.Config) == 0 {
		m.Config = nil
	}
	if maxCode > 0 && len(m.Code) > maxCode {
		return nil, fmt.Errorf("%w: module of %d bytes is above the limit of %d", ErrBadModule, len(m.Code), maxCode)
	}
	if len(m.Code) < 8 || string(m.Code[:4]) != "\x00asm" {
		return nil, fmt.Errorf("%w: code is not a WebAssembly binary", ErrBadModule)
	}
	return m, nil
}

// Call is one call into a module: the fields of the call block, with the
// arrays as Go slices (the host copies them into and out of the module's
// memory).
type Call struct {
	Key     uint64 // the int key, or the id of a string key
	Str     bool   // a string key
	Name    string // the string key, or the int key in decimal
	T       int    // the key's update count, this update included
	Offset  int    // first element of this part within the key
	Total   int    // elements of the whole key
	Workers int    // workers' pushes that Recv stands for
	Recv    []float32
	Stored  []float32
	States  [][]float32
}

// Instance is one loaded module. Its methods may be called from several
// goroutines; an instance serializes them (a WebAssembly instance runs one
// call at a time). After an error wrapping ErrFailed every call fails.
type Instance interface {
	// Hash is the module's hash.
	Hash() Hash
	// NumStates is how many state arrays c's key needs (webkv_states); c
	// carries the key's fields, not its arrays.
	NumStates(ctx context.Context, c *Call) (int, error)
	// Init fills c.States for a key's first update (webkv_init); c.States
	// are zeroed and c.Stored holds the value.
	Init(ctx context.Context, c *Call) error
	// Update runs webkv_update: on success c.Stored and c.States hold the
	// results; on failure they are unchanged.
	Update(ctx context.Context, c *Call) error
	// Close unloads the module.
	Close() error
}

// Loader loads modules: checks the code, applies its policy (allow-list,
// size) and returns a running instance.
type Loader interface {
	Load(ctx context.Context, m *Module) (Instance, error)
}

// State is a key's state under a custom updater: its update count and its
// state arrays. Stores and servers keep one per key and update it with
// Step.
type State struct {
	T      int
	States [][]float32
	ready  bool // states exist (NumStates asked, Init run)
}

// Ready reports whether the key's states exist (its first update ran, or
// they were loaded).
func (s *State) Ready() bool { return s.ready }

// Set installs loaded states (a states file, a snapshot).
func (s *State) Set(t int, states [][]float32) { s.T, s.States, s.ready = t, states, true }

// Reset forgets the states (a new updater was installed).
func (s *State) Reset() { *s = State{} }

// Step runs one update of c's key with inst: on the key's first update it
// creates the states (NumStates, then admit, if not nil, may refuse their
// memory; zeroed arrays, Init), then it calls Update with c.T and c.States
// set from st. c carries the key's fields, Recv and Stored. The update
// count advances only when the update succeeds.
func Step(ctx context.Context, inst Instance, c *Call, st *State, admit func(states int) error) error {
	c.T = st.T + 1
	if !st.ready {
		c.States = nil
		ns, err := inst.NumStates(ctx, c)
		if err != nil {
			return err
		}
		if admit != nil {
			if err := admit(ns); err != nil {
				return err
			}
		}
		states := make([][]float32, ns)
		for i := range states {
			states[i] = make([]float32, len(c.Stored))
		}
		if ns > 0 {
			c.States = states
			recv := c.Recv
			c.Recv = nil
			err := inst.Init(ctx, c)
			c.Recv = recv
			if err != nil {
				return err
			}
		}
		st.States, st.ready = states, true
	}
	c.States = st.States
	if err := inst.Update(ctx, c); err != nil {
		return err
	}
	st.T = c.T
	return nil
}

// CheckStates checks that states fit c's key under inst (loading a states
// file): the module's count of arrays, each of len(c.Stored) values.
func CheckStates(ctx context.Context, inst Instance, c *Call, states [][]float32) error {
	c.States = nil
	ns, err := inst.NumStates(ctx, c)
	if err != nil {
		return err
	}
	if len(states) != ns {
		return fmt.Errorf("key %s has %d state arrays, module %v needs %d", c.Name, len(states), inst.Hash(), ns)
	}
	for i, s := range states {
		if len(s) != len(c.Stored) {
			return fmt.Errorf("key %s: state %d has %d values, the key %d", c.Name, i, len(s), len(c.Stored))
		}
	}
	return nil
}

// marker is what a states file holds in place of an optimizer spec when
// its states belong to a custom updater.
type marker struct {
	Updater string `json:"updater"` // "wasm"
	Module  string `json:"module"`  // sha256:<hex> of the code
	Config  string `json:"config"`  // sha256:<hex> of the config
}

// Marker is the "optimizer spec" a states file carries for states of
// module m (kvcore.Store.SaveOptimizerStates with dumpOptimizer): it names
// the module and its config by hash, so loading checks that the same
// module runs.
func Marker(m *Module) []byte {
	b, _ := json.Marshal(marker{Updater: "wasm", Module: m.Hash().String(), Config: Hash(sum256(m.Config)).String()})
	return b
}

// IsMarker reports whether spec is a Marker (and not an optimizer spec).
func IsMarker(spec []byte) bool {
	var mk marker
	return len(spec) > 0 && spec[0] == '{' && json.Unmarshal(spec, &mk) == nil && mk.Updater == "wasm"
}

// CheckMarker checks that spec, a Marker, names module m.
func CheckMarker(spec []byte, m *Module) error {
	var mk marker
	if err := json.Unmarshal(spec, &mk); err != nil || mk.Updater != "wasm" {
		return fmt.Errorf("states are not of a custom updater")
	}
	if m == nil {
		return fmt.Errorf("states are of custom updater module %s, and none is installed (set that module first)", mk.Module)
	}
	if h := m.Hash().String(); mk.Module != h {
		return fmt.Errorf("states are of custom updater module %s, the installed one is %s", mk.Module, h)
	}
	if c := Hash(sum256(m.Config)).String(); mk.Config != c {
		return fmt.Errorf("states are of module %s with config %s, it runs with config %s", mk.Module, mk.Config, c)
	}
	return nil
}
