package worker

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/optimizer"
	"github.com/webkv/webkv/kvcore/psm"
	"github.com/webkv/webkv/www/mnist"
)

// Byzantine modes (Config.Byzantine): what a misbehaving worker pushes
// instead of its real update, to show what the aggregation rules withstand.
const (
	ByzantineFlip  = "flip"  // its update times −10: sign-flipped and scaled
	ByzantineScale = "scale" // its update times 100
	ByzantineNaN   = "nan"   // NaN everywhere: the relay refuses it
)

// Federated defaults, from a sweep on this demo (RATIONALE.md, "Why local
// steps with Nesterov 0.6/0.5 outside?"): DiLoCo's 0.7/0.9 suits
// thousands of outer steps; a demo run has about a hundred.
const (
	DefaultOuterLR       = 0.6
	DefaultOuterMomentum = 0.5
)

func (c *Config) federated() bool { return c.LocalSteps > 1 }

// Validate fills the federated fields that have defaults and checks them
// (Run calls it).
func (c *Config) Validate() error {
	if c.LocalSteps < 0 {
		return fmt.Errorf("worker: -local-steps %d, want >= 1", c.LocalSteps)
	}
	if c.LocalSteps == 0 {
		c.LocalSteps = 1
	}
	if c.Inner == "" {
		c.Inner = "sgd"
	}
	if c.Inner != "sgd" && c.Inner != "adam" {
		return fmt.Errorf("worker: -inner %q, want sgd or adam", c.Inner)
	}
	switch c.Outer {
	case "", "nag":
		c.Outer = "nag"
		if c.OuterLR == 0 {
			c.OuterLR = DefaultOuterLR
		}
		if c.OuterMomentum == 0 {
			c.OuterMomentum = DefaultOuterMomentum
		}
	case "fedavg":
		c.OuterLR, c.OuterMomentum = 1, 0
	default:
		return fmt.Errorf("worker: -outer %q, want nag or fedavg", c.Outer)
	}
	if c.OuterLR <= 0 || c.OuterMomentum < 0 || c.OuterMomentum >= 1 {
		return fmt.Errorf("worker: outer lr %g momentum %g: want lr > 0 and momentum in [0, 1)", c.OuterLR, c.OuterMomentum)
	}
	if c.Aggregate != "" {
		if _, err := psm.ParseAggregate(c.Aggregate); err != nil {
			return fmt.Errorf("worker: -aggregate: %w", err)
		}
	}
	if c.Compression != "" {
		if _, err := parseCompression(c.Compression); err != nil {
			return err
		}
	}
	switch c.Byzantine {
	case "", ByzantineFlip, ByzantineScale, ByzantineNaN:
	default:
		return fmt.Errorf("worker: byzantine mode %q, want flip, scale or nan", c.Byzantine)
	}
	return nil
}

// parseCompression reads "2bit,T" or "1bit,T" (MXNet's type and threshold).
func parseCompression(s string) (compute.Compression, error) {
	typ, th, ok := strings.Cut(s, ",")
	if !ok {
		return compute.Compression{}, fmt.Errorf("worker: -compress %q: want type,threshold (e.g. 2bit,0.01)", s)
	}
	var t float64
	if _, err := fmt.Sscan(th, &t); err != nil {
		return compute.Compression{}, fmt.Errorf("worker: -compress %q: threshold: %v", s, err)
	}
	c, err := compute.ParseCompression(typ, t)
	if err != nil {
		return c, fmt.Errorf("worker: -compress: %w", err)
	}
	return c, nil
}

// Mode describes the training mode, for the dashboard and the result.
func (c *Config) Mode() string {
	var b strings.Builder
	if c.federated() {
		inner := fmt.Sprintf("SGD lr %g momentum %g", c.LR, c.Momentum)
		if c.Inner == "adam" {
			inner = fmt.Sprintf("Adam lr %g", c.LR)
		}
		outer := fmt.Sprintf("Nesterov lr %g momentum %g", c.OuterLR, c.OuterMomentum)
		if c.Outer == "fedavg" {
			outer = "FedAvg"
		}
		fmt.Fprintf(&b, "local steps %d (inner %s, outer %s)", c.LocalSteps, inner, outer)
	} else {
		fmt.Fprintf(&b, "per-step SGD lr %g momentum %g", c.LR, c.Momentum)
	}
	if c.Aggregate != "" && c.Aggregate != "sum" {
		fmt.Fprintf(&b, ", %s", c.Aggregate)
	}
	if c.Compression != "" {
		fmt.Fprintf(&b, ", %s", c.Compression)
	}
	return b.String()
}

// pushesWhole reports whether the job's rule averages by itself (a worker
// pushes its whole update), or sums (a worker pushes its share).
func (c *Config) pushesWhole() bool {
	if c.Aggregate == "" {
		return false
	}
	a, err := psm.ParseAggregate(c.Aggregate)
	return err == nil && a.Kind != psm.AggSum
}

// setUpJob sets what rank 0 decides for the job (the optimizer: SGD for
// per-step training, the outer optimizer with local steps; the
// aggregation rule) and what every worker sets on its own store (the
// compression of its pushes).
func setUpJob(ctx context.Context, kv *kvcore.Store, cfg *Config) error {
	if kv.Rank() == 0 {
		opt := optimizer.SGD(cfg.LR, cfg.Momentum)
		if cfg.federated() {
			opt = optimizer.SGD(cfg.OuterLR, 0) // FedAvg: lr 1
			if cfg.Outer == "nag" {
				opt = &optimizer.Spec{Name: "nag", LearningRate: new(cfg.OuterLR), Momentum: new(cfg.OuterMomentum)}
			}
		}
		if err := kv.SetOptimizer(ctx, opt); err != nil {
			return fmt.Errorf("worker: set optimizer: %w", err)
		}
		if cfg.Aggregate != "" && !isLocal(cfg.URL) {
			if err := kv.SendCommandToServers(ctx, psm.CmdAggregate, []byte(cfg.Aggregate)); err != nil {
				return fmt.Errorf("worker: set aggregate %q: %w", cfg.Aggregate, err)
			}
		}
	}
	if cfg.Compression != "" {
		c, err := parseCompression(cfg.Compression)
		if err != nil {
			return err
		}
		if err := kv.SetGradientCompression(ctx, c); err != nil {
			return fmt.Errorf("worker: set compression: %w", err)
		}
	}
	return nil
}

// innerOpt is a worker's own optimizer for its local steps, on the host
// (the engine computes the gradients, on WebGPU or the CPU): MXNet's SGD
// with momentum (mom = momentum*mom − lr*g; w += mom) or Adam (bias-
// corrected step size, ε outside the square root). Its states live across
// rounds.
type innerOpt struct {
	adam         bool
	lr, momentum float32
	t            int
	m, v         [4][]float32
}

func newInnerOpt(cfg *Config, p *mnist.Params) *innerOpt {
	o := &innerOpt{adam: cfg.Inner == "adam", lr: float32(cfg.LR), momentum: float32(cfg.Momentum)}
	for i, t := range p.Tensors() {
		o.m[i] = make([]float32, len(t))
		if o.adam {
			o.v[i] = make([]float32, len(t))
		}
	}
	return o
}

func (o *innerOpt) step(p, g *mnist.Params) {
	o.t++
	if o.adam {
		const b1, b2, eps = 0.9, 0.999, 1e-8
		lr := o.lr * float32(math.Sqrt(1-math.Pow(b2, float64(o.t)))/(1-math.Pow(b1, float64(o.t))))
		for i, w := range p.Tensors() {
			gt, m, v := g.Tensors()[i], o.m[i], o.v[i]
			for j := range w {
				m[j] = b1*m[j] + (1-b1)*gt[j]
				v[j] = b2*v[j] + (1-b2)*gt[j]*gt[j]
				w[j] -= lr * m[j] / (float32(math.Sqrt(float64(v[j]))) + eps)
			}
		}
		return
	}
	for i, w := range p.Tensors() {
		gt, m := g.Tensors()[i], o.m[i]
		for j := range w {
			m[j] = o.momentum*m[j] - o.lr*gt[j]
			w[j] += m[j]
		}
	}
}

// byzantine replaces an update by what a misbehaving worker of mode sends.
func byzantine(mode string, u []float32) {
	switch mode {
	case ByzantineFlip:
		for j := range u {
			u[j] *= -10
		}
	case ByzantineScale:
		for j := range u {
			u[j] *= 100
		}
	case ByzantineNaN:
		nan := float32(math.NaN())
		for j := range u {
			u[j] = nan
		}
	}
}

// localSteps computes a round's update.
type localSteps struct {
	cfg    *Config
	engine mnist.Engine
	bt     *mnist.Batcher
	inner  *innerOpt     // with local steps
	g      *mnist.Params // a local step's gradient
}

// update writes the round's update into u, from the weights p the engine
// holds (the job's, just pulled): one batch's gradient, or with local
// steps p minus the weights after LocalSteps inner steps (p is changed).
// It returns the mean training loss of the round's batches.
func (l *localSteps) update(p, u *mnist.Params) (float64, error) {
	if !l.cfg.federated() {
		l.bt.Next()
		loss, _, err := l.engine.Grad(l.bt.X, l.bt.Y, u)
		return loss, err
	}
	for i, t := range p.Tensors() {
		copy(u.Tensors()[i], t) // w_start
	}
	var sum float64
	for h := range l.cfg.LocalSteps {
		if h > 0 {
			if err := l.engine.SetParams(p); err != nil {
				return 0, err
			}
		}
		l.bt.Next()
		loss, _, err := l.engine.Grad(l.bt.X, l.bt.Y, l.g)
		if err != nil {
			return 0, err
		}
		sum += loss
		l.inner.step(p, l.g)
	}
	for i, t := range u.Tensors() {
		w := p.Tensors()[i]
		for j := range t {
			t[j] -= w[j]
		}
	}
	return sum / float64(l.cfg.LocalSteps), nil
}
