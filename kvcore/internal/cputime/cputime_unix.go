//go:build unix

// Package cputime reads the CPU time the process used so far, for
// benchmarks' CPU metrics (another process on the machine moves it less
// than the wall time).
package cputime

import (
	"syscall"
	"time"
)

// Now is the CPU time (user and system, every thread, the GC's included)
// this process used so far; 0 if it cannot be read.
func Now() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
