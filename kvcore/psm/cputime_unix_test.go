//go:build unix

package psm

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time the process used so far (user and system, every
// thread, the GC's included): a benchmark's cpu_ns/key, which another
// process on the machine moves less than the wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
