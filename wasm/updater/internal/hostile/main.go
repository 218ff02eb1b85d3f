//go:build wasip1

// Command hostile is an updater module that misbehaves on purpose, for the
// sandbox's tests; its config picks how:
//
//	loop    Update never returns
//	grow    Update allocates until the memory limit (Go's runtime then
//	        dies: "out of memory")
//	panic   Update dereferences nil (the SDK reports the panic; fatal)
//	refuse  Update returns an error (refused; the module stays loaded)
//	sleep   Update sleeps an hour, then adds recv (the host's clock is
//	        fake: the sleep returns at once)
//	ok      Update adds recv (stored += recv)
package main

import (
	"errors"
	"time"

	"github.com/webkv/webkv/wasm/updater"
)

type rule struct{ mode string }

var hoard [][]byte

func (r *rule) Configure(config []byte) error {
	switch m := string(config); m {
	case "loop", "grow", "panic", "refuse", "sleep", "ok":
		r.mode = m
		return nil
	}
	return errors.New("unknown mode " + string(config))
}

var sink *int

func (r *rule) Update(c *updater.Call) error {
	switch r.mode {
	case "loop":
		//lint:ignore SA5002 it loops forever on purpose: the host's time budget must end it
		for {
		}
	case "grow":
		for {
			hoard = append(hoard, make([]byte, 1<<20))
			hoard[len(hoard)-1][0] = 1
		}
	case "panic":
		*sink = 1
	case "refuse":
		return errors.New("refusing key " + c.Name + " on purpose")
	case "sleep":
		time.Sleep(time.Hour)
	}
	updater.Add(c.Recv, c.Stored)
	return nil
}

func init() { updater.Register(&rule{mode: "ok"}) }

func main() {}
