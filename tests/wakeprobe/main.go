// Command wakeprobe measures how long a goroutine readied onto an idle P
// waits before it runs, while the goroutine that readied it keeps its own
// P busy: the cost of every hand-off to an idle core in a pipeline such as
// a list call's (caller, engine worker, sender, receiver, relay). On most
// machines it is a few microseconds; on a virtual machine whose idle vCPUs
// halt it is the vCPU's wake-up, and on a kernel that packs woken threads
// onto busy vCPUs it can be a scheduler tick (RATIONALE: "Why does
// x_one_key move by 10-20% between runs on this machine?").
//
//	go run ./tests/wakeprobe [-rounds 300] [-idle 2ms,100us,0s]
//
// For each idle time: the other P idles that long (both goroutines
// blocked), then one goroutine works 200 µs and readies the other, and
// goes on working until the other has run. It prints the wait's
// percentiles and how many waits exceeded a millisecond.
package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// sink keeps work's loop from being compiled away.
var sink atomic.Int64

// work keeps the calling goroutine's P busy until done reports true or
// limit passes.
func work(limit time.Duration, done func() bool) {
	t := time.Now()
	s := 0
	for !done() && time.Since(t) < limit {
		for i := range 1000 {
			s += i
		}
	}
	sink.Add(int64(s))
}

func probe(rounds int, idle time.Duration) []time.Duration {
	wake := make(chan int64)
	var ran atomic.Int64
	go func() {
		for t := range wake {
			ran.Store(time.Now().UnixNano() - t)
		}
	}()
	defer close(wake)
	waits := make([]time.Duration, 0, rounds)
	never := func() bool { return false }
	for range rounds {
		time.Sleep(idle)
		ran.Store(-1)
		work(200*time.Microsecond, never)
		wake <- time.Now().UnixNano() // the receiver was blocked: readied here
		work(50*time.Millisecond, func() bool { return ran.Load() >= 0 })
		waits = append(waits, time.Duration(ran.Load()))
	}
	slices.Sort(waits)
	return waits
}

func main() {
	rounds := flag.Int("rounds", 300, "hand-offs measured per idle time")
	idles := flag.String("idle", "2ms,100us,0s", "how long the other P idles before each hand-off (comma-separated)")
	flag.Parse()
	for _, s := range strings.Split(*idles, ",") {
		idle, err := time.ParseDuration(s)
		if err != nil || *rounds < 1 {
			fmt.Fprintf(os.Stderr, "wakeprobe: bad -idle %q or -rounds %d\n", s, *rounds)
			os.Exit(2)
		}
		w := probe(*rounds, idle)
		over := len(w) - func() int { i, _ := slices.BinarySearch(w, time.Millisecond); return i }()
		fmt.Printf("idle %-6v wait p50 %-10v p90 %-10v p99 %-10v max %-10v over 1ms: %d of %d\n",
			idle, w[len(w)/2].Round(time.Microsecond), w[len(w)*9/10].Round(time.Microsecond),
			w[len(w)*99/100].Round(time.Microsecond), w[len(w)-1].Round(time.Microsecond), over, len(w))
	}
}
