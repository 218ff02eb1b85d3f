//go:build wasip1

// Command fedprox is a server-side update rule with state, in the spirit of
// FedProx and FedAvgM, as a webkv updater module. The workers push
// gradients (or model deltas); the server averages them over the workers of
// the round, adds a proximal term that pulls the weights toward an anchor,
// and applies server momentum:
//
//	g      = recv / workers + mu * (w - anchor)
//	m      = momentum * m + g
//	w      = w - lr * m
//	anchor = w               every period updates (period 0: never)
//
// The anchor starts as the key's initial value (InitStates copies it), so
// with period 0 the weights are kept near where training started, as a
// FedProx client keeps its local model near the global one. States: m and
// anchor, saved with the optimizer states. Config:
// "lr=<x>,mu=<x>,momentum=<x>,period=<n>" (defaults 0.1, 0.01, 0.9, 0).
// Every operation rounds to float32 in the order of Update's kernels, so a
// Go reference that writes the same conversions gets the same bits.
//
// Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o fedprox.wasm ./wasm/updater/examples/fedprox
package main

import (
	"errors"

	"github.com/webkv/webkv/wasm/updater"
)

type rule struct {
	lr, mu, momentum float32
	period           int
	g                []float32 // scratch: the step's gradient
}

func (r *rule) Configure(config []byte) error {
	p, err := updater.Params(config, "lr", "mu", "momentum", "period")
	if err != nil {
		return err
	}
	for name, dst := range map[string]*float32{"lr": &r.lr, "mu": &r.mu, "momentum": &r.momentum} {
		if v, ok := p[name]; ok {
			*dst = float32(v)
		}
	}
	if v, ok := p["period"]; ok {
		if v < 0 || v != float64(int(v)) {
			return errors.New("period must be a whole number >= 0")
		}
		r.period = int(v)
	}
	return nil
}

func (r *rule) NumStates(*updater.Call) int { return 2 }

func (r *rule) InitStates(c *updater.Call) error {
	copy(c.States[1], c.Stored)
	return nil
}

// Update runs the rule with the SDK's kernels (see updater.Axpy: a plain
// loop would pay the host's budget check per element):
//
//	g  = w - anchor;  g = recv/workers + mu*g
//	m  = g + momentum*m
//	w += -lr*m
func (r *rule) Update(c *updater.Call) error {
	if c.Workers < 1 {
		return errors.New("no workers")
	}
	w, m, anchor := c.Stored, c.States[0], c.States[1]
	if cap(r.g) < len(w) {
		r.g = make([]float32, len(w))
	}
	g := r.g[:len(w)]
	copy(g, w)
	updater.Sub(anchor, g)
	updater.Axpby(1/float32(c.Workers), c.Recv, r.mu, g)
	updater.Axpby(1, g, r.momentum, m)
	updater.Axpy(-r.lr, m, w)
	if r.period > 0 && c.T%r.period == 0 {
		copy(anchor, w)
	}
	return nil
}

func init() { updater.Register(&rule{lr: 0.1, mu: 0.01, momentum: 0.9}) }

func main() {}
