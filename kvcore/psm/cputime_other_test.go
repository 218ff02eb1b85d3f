//go:build !unix

package psm

import "time"

// cpuTime is 0 where getrusage is missing (js, wasip1, windows): the
// benchmarks' cpu_ns/key then reads 0.
func cpuTime() time.Duration { return 0 }
