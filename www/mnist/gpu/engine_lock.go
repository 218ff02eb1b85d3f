package mlp

import "sync"

// lockedEngine serializes the calls of several engines that share one
// device (see OpenEngines).
type lockedEngine struct {
	mu *sync.Mutex
	e  Engine
}

func (l *lockedEngine) SetParams(p *Params) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.e.SetParams(p)
}

func (l *lockedEngine) Grad(x []float32, y []uint8, g *Params) (float64, int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.e.Grad(x, y, g)
}

func (l *lockedEngine) Evaluate(x []float32, y []uint8) (float64, float64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.e.Evaluate(x, y)
}
