//go:build !unix

// Package cputime reads the CPU time the process used so far, for
// benchmarks' CPU metrics (another process on the machine moves it less
// than the wall time).
package cputime

import "time"

// Now is 0 where getrusage is missing (js, wasip1, windows): benchmarks'
// CPU metrics then read 0.
func Now() time.Duration { return 0 }
