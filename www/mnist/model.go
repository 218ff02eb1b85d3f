package mnist

import (
	"errors"
	"fmt"
	"math"
	"math/rand"
)

// Shape is the layer sizes of the MLP.
type Shape struct {
	In, Hidden, Out int
}

// MLP is the demo model: 28×28 pixels, 128 hidden units, 10 digits.
var MLP = Shape{In: 784, Hidden: 128, Out: 10}

// Validate returns an error naming the first size that is not positive
// (Out must be at least 2: a classifier needs two classes).
func (s Shape) Validate() error {
	if err := s.validate(); err != nil {
		return fmt.Errorf("mnist: shape: %w", err)
	}
	return nil
}

func (s Shape) validate() error {
	switch {
	case s.In <= 0:
		return fmt.Errorf("input size In = %d, want > 0", s.In)
	case s.Hidden <= 0:
		return fmt.Errorf("hidden size Hidden = %d, want > 0", s.Hidden)
	case s.Out <= 1:
		return fmt.Errorf("output size Out = %d, want > 1 (a classifier needs two classes)", s.Out)
	}
	return nil
}

// NumParams is the total number of parameters.
func (s Shape) NumParams() int { return s.In*s.Hidden + s.Hidden + s.Hidden*s.Out + s.Out }

// TensorNames are the store keys of the parameter tensors, in Tensors order.
var TensorNames = [4]string{"w1", "b1", "w2", "b2"}

// TensorShapes returns the shapes of w1, b1, w2, b2.
func (s Shape) TensorShapes() [4][]int {
	return [4][]int{{s.In, s.Hidden}, {s.Hidden}, {s.Hidden, s.Out}, {s.Out}}
}

// Params holds the model's parameters, or their gradients.
type Params struct {
	Shape
	W1, B1, W2, B2 []float32
}

// NewParams returns zeroed parameters of shape s.
func NewParams(s Shape) (*Params, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &Params{
		Shape: s,
		W1:    make([]float32, s.In*s.Hidden),
		B1:    make([]float32, s.Hidden),
		W2:    make([]float32, s.Hidden*s.Out),
		B2:    make([]float32, s.Out),
	}, nil
}

// InitParams returns He-initialized weights (normal, std sqrt(2/fan_in)) and
// zero biases, reproducible from seed, so every worker of a job can start
// from the same model without a broadcast.
func InitParams(s Shape, seed int64) (*Params, error) {
	p, err := NewParams(s)
	if err != nil {
		return nil, err
	}
	r := rand.New(rand.NewSource(seed))
	std1 := math.Sqrt(2 / float64(s.In))
	for i := range p.W1 {
		p.W1[i] = float32(r.NormFloat64() * std1)
	}
	std2 := math.Sqrt(2 / float64(s.Hidden))
	for i := range p.W2 {
		p.W2[i] = float32(r.NormFloat64() * std2)
	}
	return p, nil
}

// Tensors returns w1, b1, w2, b2 (the slices themselves, not copies).
func (p *Params) Tensors() [4][]float32 { return [4][]float32{p.W1, p.B1, p.W2, p.B2} }

// ErrBadParams is wrapped by errors about parameter tensors.
var ErrBadParams = errors.New("bad params")

// Validate returns an error wrapping ErrBadParams if p is nil, its shape is
// invalid or a tensor's length does not match the shape.
func (p *Params) Validate() error {
	if err := p.validate(); err != nil {
		return fmt.Errorf("mnist: %w: %s", ErrBadParams, err)
	}
	return nil
}

// check is Validate with the operation named: "mnist: what: bad params: …".
func (p *Params) check(what string) error {
	if err := p.validate(); err != nil {
		return fmt.Errorf("mnist: %s: %w: %s", what, ErrBadParams, err)
	}
	return nil
}

func (p *Params) validate() error {
	if p == nil {
		return errors.New("nil params")
	}
	if err := p.Shape.validate(); err != nil {
		return err
	}
	sh := p.TensorShapes()
	for i, t := range p.Tensors() {
		want := 1
		for _, d := range sh[i] {
			want *= d
		}
		if len(t) != want {
			return fmt.Errorf("%s has %d values, want %d for shape %v", TensorNames[i], len(t), want, sh[i])
		}
	}
	return nil
}

// ErrBadBatch is wrapped by errors about batch inputs.
var ErrBadBatch = errors.New("bad batch")

// CheckBatch returns the number of samples of the batch (x, y) for a model
// of shape s: len(y), with len(x) = len(y)×In and every label below Out;
// otherwise an error wrapping ErrBadBatch.
func (s Shape) CheckBatch(x []float32, y []uint8) (int, error) {
	b := len(y)
	if b == 0 {
		return 0, fmt.Errorf("mnist: %w: empty batch", ErrBadBatch)
	}
	if len(x) != b*s.In {
		return 0, fmt.Errorf("mnist: %w: %d inputs for %d labels, want %d×%d = %d", ErrBadBatch, len(x), b, b, s.In, b*s.In)
	}
	for i, l := range y {
		if int(l) >= s.Out {
			return 0, fmt.Errorf("mnist: %w: label %d of sample %d is not below Out = %d", ErrBadBatch, l, i, s.Out)
		}
	}
	return b, nil
}

// Workspace holds the activations of one batch, reused across calls to
// avoid allocating per step. The zero value is ready to use.
type Workspace struct {
	a1, z2, dz2, dz1 []float32
}

func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

// forward computes a1 = relu(x·W1 + b1) (b×Hidden) and z2 = a1·W2 + b2
// (b×Out) into ws.
func forward(p *Params, x []float32, b int, ws *Workspace) {
	s := p.Shape
	ws.a1 = grow(ws.a1, b*s.Hidden)
	ws.z2 = grow(ws.z2, b*s.Out)
	for r := 0; r < b; r++ {
		h := ws.a1[r*s.Hidden : (r+1)*s.Hidden]
		copy(h, p.B1)
		xr := x[r*s.In : (r+1)*s.In]
		for i, xv := range xr {
			if xv == 0 { // MNIST is mostly background pixels
				continue
			}
			w := p.W1[i*s.Hidden : (i+1)*s.Hidden]
			for j := range h {
				h[j] += xv * w[j]
			}
		}
		for j := range h {
			if h[j] < 0 {
				h[j] = 0
			}
		}
		z := ws.z2[r*s.Out : (r+1)*s.Out]
		copy(z, p.B2)
		for i, hv := range h {
			if hv == 0 {
				continue
			}
			w := p.W2[i*s.Out : (i+1)*s.Out]
			for j := range z {
				z[j] += hv * w[j]
			}
		}
	}
}

// SoftmaxXent turns logits z (one row) into the gradient of the mean loss
// over a batch of b, (softmax(z) - onehot(y)) / b, written to dz (nil: no
// gradient), and returns the row's loss and whether its argmax is y. It is
// the reference of every backend's loss kernel (www/mnist/gpu tests its
// WGSL kernel against it).
func SoftmaxXent(z []float32, y int, b int, dz []float32) (float64, bool) {
	mx := z[0]
	arg := 0
	for j, v := range z {
		if v > mx {
			mx, arg = v, j
		}
	}
	var sum float64
	for _, v := range z {
		sum += math.Exp(float64(v - mx))
	}
	loss := math.Log(sum) - float64(z[y]-mx)
	if dz != nil {
		inv := 1 / float64(b)
		for j, v := range z {
			pj := math.Exp(float64(v-mx)) / sum
			if j == y {
				pj -= 1
			}
			dz[j] = float32(pj * inv)
		}
	}
	return loss, arg == y
}

// Grad computes the gradient of the mean softmax cross-entropy loss of the
// batch (x: b×In pixels scaled to [0,1], y: b labels) with respect to p,
// into g (same shape as p), and returns the mean loss and the number of
// samples classified correctly. ws may be nil.
func Grad(p *Params, x []float32, y []uint8, g *Params, ws *Workspace) (loss float64, correct int, err error) {
	if err := p.check("grad: params"); err != nil {
		return 0, 0, err
	}
	if err := g.check("grad: gradient"); err != nil {
		return 0, 0, err
	}
	if g.Shape != p.Shape {
		return 0, 0, fmt.Errorf("mnist: grad: %w: gradient shape %+v differs from params shape %+v", ErrBadParams, g.Shape, p.Shape)
	}
	b, err := p.Shape.CheckBatch(x, y)
	if err != nil {
		return 0, 0, err
	}
	if ws == nil {
		ws = &Workspace{}
	}
	s := p.Shape
	forward(p, x, b, ws)
	ws.dz2 = grow(ws.dz2, b*s.Out)
	for r := 0; r < b; r++ {
		l, ok := SoftmaxXent(ws.z2[r*s.Out:(r+1)*s.Out], int(y[r]), b, ws.dz2[r*s.Out:(r+1)*s.Out])
		loss += l
		if ok {
			correct++
		}
	}
	// Output layer: dW2 = a1ᵀ·dz2, db2 = Σ_rows dz2, da1 = dz2·W2ᵀ masked by ReLU.
	clear(g.W2)
	clear(g.B2)
	clear(g.W1)
	clear(g.B1)
	ws.dz1 = grow(ws.dz1, b*s.Hidden)
	for r := 0; r < b; r++ {
		d := ws.dz2[r*s.Out : (r+1)*s.Out]
		h := ws.a1[r*s.Hidden : (r+1)*s.Hidden]
		for j, v := range d {
			g.B2[j] += v
		}
		dh := ws.dz1[r*s.Hidden : (r+1)*s.Hidden]
		for i, hv := range h {
			w := p.W2[i*s.Out : (i+1)*s.Out]
			var acc float32
			for j, v := range d {
				acc += v * w[j]
			}
			if hv > 0 {
				dh[i] = acc
				gw := g.W2[i*s.Out : (i+1)*s.Out]
				for j, v := range d {
					gw[j] += hv * v
				}
			} else {
				dh[i] = 0
			}
		}
		for j, v := range dh {
			g.B1[j] += v
		}
		xr := x[r*s.In : (r+1)*s.In]
		for i, xv := range xr {
			if xv == 0 {
				continue
			}
			gw := g.W1[i*s.Hidden : (i+1)*s.Hidden]
			for j, v := range dh {
				gw[j] += xv * v
			}
		}
	}
	return loss / float64(b), correct, nil
}

// Evaluate returns the mean loss and the accuracy of p on (x, y), in
// batches of up to 256 rows.
func Evaluate(p *Params, x []float32, y []uint8) (loss, acc float64, err error) {
	if err := p.check("evaluate"); err != nil {
		return 0, 0, err
	}
	n, err := p.Shape.CheckBatch(x, y)
	if err != nil {
		return 0, 0, err
	}
	var ws Workspace
	correct := 0
	const chunk = 256
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		forward(p, x[lo*p.In:hi*p.In], hi-lo, &ws)
		for r := 0; r < hi-lo; r++ {
			l, ok := SoftmaxXent(ws.z2[r*p.Out:(r+1)*p.Out], int(y[lo+r]), 1, nil)
			loss += l
			if ok {
				correct++
			}
		}
	}
	return loss / float64(n), float64(correct) / float64(n), nil
}

// SGDStep does p -= lr·g: the plain update of a worker training alone,
// used by tests and by the single-worker measurement.
func SGDStep(p, g *Params, lr float32) {
	pt, gt := p.Tensors(), g.Tensors()
	for k := range pt {
		for i, v := range gt[k] {
			pt[k][i] -= lr * v
		}
	}
}
