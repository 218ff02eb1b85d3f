//go:build wasip1

package updater

import (
	"runtime"
	"unsafe"
)

// The exports of the module ABI (kvcore/updater's package doc). They run
// one at a time: a WebAssembly instance is single-threaded.

const (
	abiVersion = 1
	// Call block offsets, as kvcore/updater's Off* constants (a native
	// test checks that they agree).
	offKey     = 8
	offFlags   = 16
	offN       = 20
	offName    = 24
	offNameLen = 28
	offRecv    = 32
	offStored  = 36
	offStates  = 40
	offNStates = 44
	offT       = 48
	offOffset  = 52
	offTotal   = 56
	offWorkers = 60
	offMsg     = 64
	offMsgLen  = 68

	statusOK      = 0
	statusRefused = 1
	statusFatal   = 2
	maxStates     = 8
)

// blocks keeps the memory given out by webkv_alloc alive, by address.
var blocks = map[uint32][]byte{}

// cur and stateViews are reused by every call (no garbage per update);
// lastMsg holds the message of the last failed call until the next one.
var (
	cur        Call
	stateViews [maxStates][]float32
	lastMsg    []byte
)

// The functions the host calls, which Go code does not; listed here, the
// linters that do not know //go:wasmexport see them used.
var _ = []any{abiVersionExport, allocExport, freeExport, configureExport, statesExport, initExport, updateExport}

//go:wasmexport webkv_abi_version
func abiVersionExport() int32 { return abiVersion }

//go:wasmexport webkv_alloc
func allocExport(size uint32) uint32 {
	if size == 0 || size > 1<<31 {
		return 0
	}
	b := make([]byte, int(size)+15)
	p := (addr(b) + 15) &^ 15
	blocks[p] = b
	return p
}

//go:wasmexport webkv_free
func freeExport(ptr uint32) { delete(blocks, ptr) }

//go:wasmexport webkv_configure
func configureExport(call, ptr, n uint32) (status int32) {
	defer recoverPanic(call, &status, statusFatal)
	var cfg []byte
	if n > 0 {
		cfg = unsafe.Slice((*byte)(at(ptr, n)), n)
	}
	if rule == nil {
		return fail(call, statusFatal, "no rule registered (call updater.Register in an init function)")
	}
	c, ok := rule.(Configurable)
	if !ok {
		if n == 0 {
			return statusOK
		}
		return fail(call, statusFatal, "the module's rule takes no config (it does not implement updater.Configurable)")
	}
	if err := c.Configure(cfg); err != nil {
		return fail(call, statusFatal, "configure: "+err.Error())
	}
	return statusOK
}

//go:wasmexport webkv_states
func statesExport(call uint32) (status int32) {
	defer recoverPanic(call, &status, -1)
	if ready(call) != statusOK {
		return -1
	}
	c := load(call)
	s, ok := rule.(Stateful)
	if !ok {
		return 0
	}
	n := s.NumStates(c)
	if n < 0 || n > maxStates {
		return fail(call, -1, "NumStates returned "+itoa(n)+" (want 0 to 8)")
	}
	return int32(n)
}

//go:wasmexport webkv_init
func initExport(call uint32) (status int32) {
	defer recoverPanic(call, &status, statusFatal)
	if st := ready(call); st != statusOK {
		return st
	}
	c := load(call)
	if s, ok := rule.(Stateful); ok {
		if err := s.InitStates(c); err != nil {
			return fail(call, statusRefused, err.Error())
		}
	}
	return statusOK
}

//go:wasmexport webkv_update
func updateExport(call uint32) (status int32) {
	defer recoverPanic(call, &status, statusFatal)
	if st := ready(call); st != statusOK {
		return st
	}
	c := load(call)
	if err := rule.Update(c); err != nil {
		return fail(call, statusRefused, err.Error())
	}
	return statusOK
}

func ready(call uint32) int32 {
	if rule == nil {
		return fail(call, statusFatal, "no rule registered (call updater.Register in an init function)")
	}
	if call == 0 {
		return fail(call, statusFatal, "call block at address 0")
	}
	return statusOK
}

// at returns a pointer to the size bytes at address p, which must lie in a
// block from webkv_alloc (the host's arena); anything else is a host bug,
// reported as a fatal error rather than a read of random memory.
func at(p, size uint32) unsafe.Pointer {
	for base, b := range blocks {
		if p >= base && uint64(p-base)+uint64(size) <= uint64(len(b))-uint64(base-addr(b)) {
			return unsafe.Pointer(&b[p-addr(b)])
		}
	}
	panic("address " + itoa(int(p)) + " (+" + itoa(int(size)) + " bytes) is not in a block from webkv_alloc")
}

func addr(b []byte) uint32 { return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) }

func u32(call, off uint32) uint32 { return *(*uint32)(at(call+off, 4)) }

func floats(p, n uint32) []float32 {
	if p == 0 || n == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(at(p, 4*n)), n)
}

// load fills cur from the call block at call.
func load(call uint32) *Call {
	n := u32(call, offN)
	c := &cur
	c.Key = *(*uint64)(at(call+offKey, 8))
	c.Str = u32(call, offFlags)&1 != 0
	c.Name = ""
	if l := u32(call, offNameLen); l > 0 {
		c.Name = unsafe.String((*byte)(at(u32(call, offName), l)), l)
	}
	c.T = int(u32(call, offT))
	c.Offset, c.Total, c.Workers = int(u32(call, offOffset)), int(u32(call, offTotal)), int(u32(call, offWorkers))
	c.Recv, c.Stored = floats(u32(call, offRecv), n), floats(u32(call, offStored), n)
	ns := min(u32(call, offNStates), maxStates)
	c.States = stateViews[:ns]
	if ns > 0 {
		ptrs := unsafe.Slice((*uint32)(at(u32(call, offStates), 4*ns)), ns)
		for i, p := range ptrs {
			c.States[i] = floats(p, n)
		}
	} else {
		c.States = nil
	}
	return c
}

// fail records msg as the call's error message and returns status.
func fail(call uint32, status int32, msg string) int32 {
	lastMsg = append(lastMsg[:0], msg...)
	if call != 0 {
		*(*uint32)(at(call+offMsg, 4)) = addr(lastMsg)
		*(*uint32)(at(call+offMsgLen, 4)) = uint32(len(lastMsg))
	}
	return status
}

// recoverPanic turns a panic of the rule into the fatal status fatal with
// the panic's text: the Go runtime survives it, but the rule's own data
// may not, so the host unloads the module.
func recoverPanic(call uint32, status *int32, fatal int32) {
	r := recover()
	if r == nil {
		return
	}
	msg := "panic"
	switch v := r.(type) {
	case runtime.Error:
		msg = "panic: " + v.Error()
	case error:
		msg = "panic: " + v.Error()
	case string:
		msg = "panic: " + v
	}
	*status = fail(call, fatal, msg)
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	neg := n < 0
	if neg {
		n = -n
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}
