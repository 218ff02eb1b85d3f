//go:build wasip1

// Command mxtest is MXNet's Test optimizer as a webkv updater module: the
// rule MXNet's distributed tests install on their servers
// (tests/nightly/dist_sync_kvstore.py: set_optimizer(create('test',
// rescale_grad=rate))). MXNet 1.x defines it as
//
//	def create_state(self, index, weight): return zeros(weight.shape)
//	def update(self, index, weight, grad, state):
//	    weight[:] += grad * self.rescale_grad
//	    state[:] = weight
//
// so the weights grow by the pushed sum (no negated gradients needed to
// port those tests), and the one state array follows the weight. Config:
// "rescale_grad=<x>" (default 1). Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o mxtest.wasm ./wasm/updater/examples/mxtest
package main

import "github.com/webkv/webkv/wasm/updater"

type test struct{ rescale float32 }

func (o *test) Configure(config []byte) error {
	p, err := updater.Params(config, "rescale_grad")
	if err != nil {
		return err
	}
	if v, ok := p["rescale_grad"]; ok {
		o.rescale = float32(v)
	}
	return nil
}

func (o *test) NumStates(*updater.Call) int { return 1 }

// InitStates leaves the state zero, as MXNet's create_state.
func (o *test) InitStates(*updater.Call) error { return nil }

func (o *test) Update(c *updater.Call) error {
	updater.Axpy(o.rescale, c.Recv, c.Stored) // weight += rescale_grad * grad
	copy(c.States[0], c.Stored)               // state = weight
	return nil
}

func init() { updater.Register(&test{rescale: 1}) }

func main() {}
