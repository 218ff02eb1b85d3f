//go:build cgo && !js && !wasip1

package main

import (
	"errors"
	"fmt"
	"sync"

	"github.com/webkv/webkv/native"
	"github.com/webkv/webkv/www/mnist"
	"github.com/webkv/webkv/www/mnist/gpu"
)

// openGPU opens one device (package native's bring-up) and n engines on
// it that share a lock: one device runs one step at a time anyway, and on
// a CPU adapter n devices would each start a thread pool and fight over
// the same cores.
func openGPU(n, maxBatch int) (engines, error) {
	quietWGPU()
	d, err := native.Open(nil)
	if err != nil {
		return engines{}, err
	}
	var mu sync.Mutex
	var gs []*gpu.Engine
	closeAll := func() error {
		var errs []error
		for _, g := range gs {
			errs = append(errs, g.Close())
		}
		d.Release()
		return errors.Join(errs...)
	}
	list := make([]mnist.Engine, n)
	for i := range list {
		g, err := gpu.New(d.Device, mnist.MLP, &gpu.Options{MaxBatch: maxBatch, Lock: &mu})
		if err != nil {
			return engines{}, errors.Join(err, closeAll())
		}
		gs = append(gs, g)
		list[i] = g
	}
	return engines{list: list, backend: fmt.Sprintf("webgpu: %s", d.Name()), cpuAdapter: d.IsCPU(), close: closeAll}, nil
}
