package sandbox

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
)

// The WASI functions a module may import (wasi_snapshot_preview1), granted
// without capabilities; see kvcore/updater's package doc. They run during a
// call into the module, which holds the instance's lock, and find the
// instance in the call's context.

const wasiModule = "wasi_snapshot_preview1"

// WASI errno values.
const (
	errnoSuccess = 0
	errnoBadf    = 8
	errnoFault   = 21
	errnoInval   = 28
	errnoNosys   = 52
)

// fakeEpoch is the wall clock's start: 2022-01-01T00:00:00Z, as wazero's
// own fake clock.
const fakeEpoch = 1640995200 * 1e9

type wasiFunc struct {
	params, results []api.ValueType
	fn              func(in *instance, mem api.Memory, stack []uint64) uint32
}

var granted = map[string]wasiFunc{
	"args_get":          {[]api.ValueType{i32, i32}, []api.ValueType{i32}, none},
	"args_sizes_get":    {[]api.ValueType{i32, i32}, []api.ValueType{i32}, zeroSizes},
	"environ_get":       {[]api.ValueType{i32, i32}, []api.ValueType{i32}, none},
	"environ_sizes_get": {[]api.ValueType{i32, i32}, []api.ValueType{i32}, zeroSizes},
	"clock_time_get":    {[]api.ValueType{i32, i64, i32}, []api.ValueType{i32}, clockTimeGet},
	"clock_res_get":     {[]api.ValueType{i32, i32}, []api.ValueType{i32}, clockResGet},
	"random_get":        {[]api.ValueType{i32, i32}, []api.ValueType{i32}, randomGet},
	"fd_write":          {[]api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}, fdWrite},
	"poll_oneoff":       {[]api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}, pollOneoff},
	"sched_yield":       {nil, []api.ValueType{i32}, none},
	"proc_exit":         {[]api.ValueType{i32}, nil, nil}, // handled in instantiateWASI
}

// instantiateWASI gives rt the WASI functions cm imports: the granted
// ones, and ENOSYS for every other WASI function. An import from another
// module, or a WASI import with a signature WASI does not have, is an
// error.
func instantiateWASI(ctx context.Context, rt wazero.Runtime, cm wazero.CompiledModule) error {
	b := rt.NewHostModuleBuilder(wasiModule)
	seen := map[string]bool{}
	for _, f := range cm.ImportedFunctions() {
		mod, name, _ := f.Import()
		if mod != wasiModule {
			return fmt.Errorf("imports %s.%s: an updater may import only the WASI functions its host grants (see kvcore/updater)", mod, name)
		}
		if seen[name] {
			continue
		}
		seen[name] = true
		params, results := f.ParamTypes(), f.ResultTypes()
		g, ok := granted[name]
		switch {
		case ok && (!slices.Equal(params, g.params) || !slices.Equal(results, g.results)):
			return fmt.Errorf("imports %s.%s with signature %s, WASI's is %s", mod, name, sigString(params, results), sigString(g.params, g.results))
		case name == "proc_exit":
			b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(procExit), params, results).Export(name)
		case ok:
			b.NewFunctionBuilder().WithGoModuleFunction(wrap(g.fn), params, results).Export(name)
		case slices.Equal(results, []api.ValueType{i32}):
			// Not granted: a function that grants nothing. Descriptors
			// (files, directories, sockets) do not exist: EBADF, which
			// is also how a program learns that no directory is
			// preopened. Anything else: ENOSYS.
			errno := uint64(errnoNosys)
			if strings.HasPrefix(name, "fd_") || strings.HasPrefix(name, "path_") || strings.HasPrefix(name, "sock_") {
				errno = errnoBadf
			}
			b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, _ api.Module, stack []uint64) {
				stack[0] = errno
			}), params, results).Export(name)
		default:
			return fmt.Errorf("imports %s.%s with signature %s, not a WASI function", mod, name, sigString(params, results))
		}
	}
	_, err := b.Instantiate(ctx)
	return err
}

func wrap(fn func(in *instance, mem api.Memory, stack []uint64) uint32) api.GoModuleFunc {
	return func(ctx context.Context, m api.Module, stack []uint64) {
		in, _ := ctx.Value(instKey{}).(*instance)
		if in == nil {
			stack[0] = errnoNosys
			return
		}
		stack[0] = uint64(fn(in, m.Memory(), stack))
	}
}

func procExit(ctx context.Context, m api.Module, stack []uint64) {
	code := uint32(stack[0])
	_ = m.CloseWithExitCode(ctx, code)
	panic(sys.NewExitError(code))
}

func none(*instance, api.Memory, []uint64) uint32 { return errnoSuccess }

// zeroSizes answers args_sizes_get and environ_sizes_get: nothing.
func zeroSizes(_ *instance, mem api.Memory, stack []uint64) uint32 {
	if !mem.WriteUint32Le(uint32(stack[0]), 0) || !mem.WriteUint32Le(uint32(stack[1]), 0) {
		return errnoFault
	}
	return errnoSuccess
}

// clockTimeGet reads the fake clock, which advances 1 ms per reading.
func clockTimeGet(in *instance, mem api.Memory, stack []uint64) uint32 {
	id, res := uint32(stack[0]), uint32(stack[2])
	in.clock += 1e6
	var t uint64
	switch id {
	case 0: // realtime
		t = fakeEpoch + in.clock
	case 1, 2, 3: // monotonic, process and thread CPU time
		t = in.clock
	default:
		return errnoInval
	}
	if !mem.WriteUint64Le(res, t) {
		return errnoFault
	}
	return errnoSuccess
}

func clockResGet(_ *instance, mem api.Memory, stack []uint64) uint32 {
	if uint32(stack[0]) > 3 {
		return errnoInval
	}
	if !mem.WriteUint64Le(uint32(stack[1]), 1e6) {
		return errnoFault
	}
	return errnoSuccess
}

// randomGet fills the buffer from the instance's generator, seeded with
// the module's hash: the same bytes every run.
func randomGet(in *instance, mem api.Memory, stack []uint64) uint32 {
	buf, ok := mem.Read(uint32(stack[0]), uint32(stack[1]))
	if !ok {
		return errnoFault
	}
	_, _ = in.rng.Read(buf)
	return errnoSuccess
}

// fdWrite keeps the start of what a call writes to stdout and stderr, for
// error messages (a Go runtime's fatal error and a panic's message come
// first); other descriptors do not exist.
func fdWrite(in *instance, mem api.Memory, stack []uint64) uint32 {
	fd, iovs, n, res := uint32(stack[0]), uint32(stack[1]), uint32(stack[2]), uint32(stack[3])
	if fd != 1 && fd != 2 {
		return errnoBadf
	}
	var total uint32
	for i := range n {
		iov, ok := mem.Read(iovs+8*i, 8)
		if !ok {
			return errnoFault
		}
		b, ok := mem.Read(binary.LittleEndian.Uint32(iov), binary.LittleEndian.Uint32(iov[4:]))
		if !ok {
			return errnoFault
		}
		if room := maxOut - len(in.out); room > 0 {
			in.out = append(in.out, b[:min(len(b), room)]...)
		}
		total += uint32(len(b))
	}
	if !mem.WriteUint32Le(res, total) {
		return errnoFault
	}
	return errnoSuccess
}

// pollOneoff serves clock subscriptions (sleeps) at once, advancing the
// fake clock by the time asked; descriptor subscriptions fail with EBADF.
func pollOneoff(in *instance, mem api.Memory, stack []uint64) uint32 {
	subs, events, n, res := uint32(stack[0]), uint32(stack[1]), uint32(stack[2]), uint32(stack[3])
	if n == 0 {
		return errnoInval
	}
	le := binary.LittleEndian
	for i := range n {
		s, ok := mem.Read(subs+48*i, 48)
		if !ok {
			return errnoFault
		}
		ev, ok := mem.Read(events+32*i, 32)
		if !ok {
			return errnoFault
		}
		tag := s[8]
		clear(ev)
		copy(ev[0:8], s[0:8]) // userdata
		ev[10] = tag
		if tag == 0 { // clock
			timeout, abs := le.Uint64(s[24:]), le.Uint16(s[40:])&1 != 0
			if abs {
				if timeout > in.clock {
					in.clock = timeout
				}
			} else {
				in.clock += timeout
			}
		} else {
			le.PutUint16(ev[8:], errnoBadf)
		}
	}
	if !mem.WriteUint32Le(res, n) {
		return errnoFault
	}
	return errnoSuccess
}
