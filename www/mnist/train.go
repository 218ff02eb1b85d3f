package mnist

import (
	"fmt"
	"math/rand"
)

// Engine computes gradients of the model: the CPU reference (CPU) or the
// WebGPU kernels (package gpu, www/mnist/gpu). Engines are not safe for
// concurrent use.
type Engine interface {
	// SetParams sets the weights the next Grad uses.
	SetParams(p *Params) error
	// Grad computes the mean-loss gradient of a batch into g and returns
	// the mean loss and the number of correct predictions.
	Grad(x []float32, y []uint8, g *Params) (loss float64, correct int, err error)
	// Evaluate returns the mean loss and accuracy on (x, y).
	Evaluate(x []float32, y []uint8) (loss, acc float64, err error)
}

// CPU is the Engine of the pure-Go reference.
type CPU struct {
	p  *Params
	ws Workspace
}

// NewCPU returns a CPU engine for shape s.
func NewCPU(s Shape) (*CPU, error) {
	p, err := NewParams(s)
	if err != nil {
		return nil, err
	}
	return &CPU{p: p}, nil
}

// SetParams copies p.
func (c *CPU) SetParams(p *Params) error {
	if err := p.check("set params"); err != nil {
		return err
	}
	if p.Shape != c.p.Shape {
		return fmt.Errorf("mnist: set params: %w: shape %+v, engine built for %+v", ErrBadParams, p.Shape, c.p.Shape)
	}
	for i, t := range p.Tensors() {
		copy(c.p.Tensors()[i], t)
	}
	return nil
}

// Grad is the package-level Grad on the engine's parameters.
func (c *CPU) Grad(x []float32, y []uint8, g *Params) (float64, int, error) {
	return Grad(c.p, x, y, g, &c.ws)
}

// Evaluate is the package-level Evaluate on the engine's parameters.
func (c *CPU) Evaluate(x []float32, y []uint8) (float64, float64, error) {
	return Evaluate(c.p, x, y)
}

// Batcher walks a set in seeded random order, epoch after epoch, filling
// fixed-size batches.
type Batcher struct {
	set   *Set
	r     *rand.Rand
	order []int
	pos   int
	epoch int
	X     []float32 // the current batch's inputs
	Y     []uint8   // and labels
}

// NewBatcher returns a Batcher of batch-size batches over set.
func NewBatcher(set *Set, batch int, seed int64) (*Batcher, error) {
	if set == nil || set.Len() == 0 {
		return nil, fmt.Errorf("mnist: batcher: empty data set")
	}
	if batch <= 0 {
		return nil, fmt.Errorf("mnist: batcher: batch size %d, want > 0", batch)
	}
	b := &Batcher{set: set, r: rand.New(rand.NewSource(seed)), X: make([]float32, batch*Pixels), Y: make([]uint8, batch)}
	b.order = b.r.Perm(set.Len())
	return b, nil
}

// Epoch is the number of completed passes over the set.
func (b *Batcher) Epoch() int { return b.epoch }

// Next fills X and Y with the next batch.
func (b *Batcher) Next() {
	n := len(b.Y)
	idx := make([]int, 0, n)
	for len(idx) < n {
		if b.pos == len(b.order) {
			b.r.Shuffle(len(b.order), func(i, j int) { b.order[i], b.order[j] = b.order[j], b.order[i] })
			b.pos = 0
			b.epoch++
		}
		k := min(n-len(idx), len(b.order)-b.pos)
		idx = append(idx, b.order[b.pos:b.pos+k]...)
		b.pos += k
	}
	_ = b.set.Batch(idx, b.X, b.Y) // sizes match by construction
}
