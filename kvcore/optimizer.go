package kvcore

// PLACEHOLDER (to be replaced by the optimizer work): SGD only.

import (
	"encoding/json"
	"fmt"
)

// NumStates is the number of state arrays kind keeps per key under p.
func (k OptKind) NumStates(p *StepParams) int {
	switch k {
	case OptSGD, OptNAG, OptSignum:
		if p.Momentum != 0 {
			return 1
		}
		return 0
	case OptAdam, OptAdamW, OptAdaDelta, OptFTRL, OptLAMB:
		return 2
	case OptAdaGrad:
		return 1
	case OptRMSProp:
		if p.Flags&FlagCentered != 0 {
			return 3
		}
		return 1
	}
	return 0
}

// Optimizer is a declarative optimizer spec.
type Optimizer struct {
	Name         string  `json:"name"`
	LearningRate float64 `json:"learning_rate"`
}

// ParseOptimizer decodes a JSON optimizer spec.
func ParseOptimizer(b []byte) (*Optimizer, error) {
	var o Optimizer
	if err := json.Unmarshal(b, &o); err != nil {
		return nil, err
	}
	return &o, o.Validate()
}

// Validate checks names and hyper-parameters.
func (o *Optimizer) Validate() error {
	if o.Name != "sgd" {
		return fmt.Errorf("unknown optimizer %q", o.Name)
	}
	return nil
}

// Kind is the kernel the optimizer runs.
func (o *Optimizer) Kind() OptKind { return OptSGD }

// Params fills p for update t (from 1) of key; numUpdate is the store-wide
// update count that learning-rate schedules follow.
func (o *Optimizer) Params(key Key, t, numUpdate int, p *StepParams) {
	*p = StepParams{LR: float32(o.LearningRate), RescaleGrad: 1, ClipGradient: -1, T: float32(t)}
}

// StateInit is the initial value of state i.
func (o *Optimizer) StateInit(i int) float32 { return 0 }

func stepRange(k OptKind, p *StepParams, w, g []float32, states [][]float32, lo, hi int) {
	for i := lo; i < hi; i++ {
		w[i] -= p.LR * (p.RescaleGrad*g[i] + p.WD*w[i])
	}
}

func lambStep(p *StepParams, w, g []float32, states [][]float32) error {
	return fmt.Errorf("lamb: not implemented yet")
}
