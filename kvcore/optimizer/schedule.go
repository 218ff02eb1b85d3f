package optimizer

import (
	"fmt"
	"math"
)

// LRScheduler is a declarative learning-rate schedule: MXNet 1.x's
// python/mxnet/lr_scheduler.py (FactorScheduler, MultiFactorScheduler,
// PolyScheduler, CosineScheduler, each with optional warm-up), driven by the
// store's update count num_update (the largest per-key update count, as in
// MXNet's Optimizer._update_count).
//
// The base learning rate is the optimizer's learning_rate, or base_lr here
// (giving both with different values is an error: MXNet silently lets one
// override the other, and which one wins depends on the scheduler class).
//
// MXNet's schedulers are stateful objects that assume num_update never
// decreases; these are the same functions written in closed form, so a
// schedule restored from a states file continues where it was:
//
//	warm-up (num_update < warmup_steps):
//	  linear:   warmup_begin_lr + (base_lr - warmup_begin_lr) * num_update / warmup_steps
//	  constant: warmup_begin_lr
//	factor:      k = number of multiples of step below num_update (num_update > count+step loop),
//	             base_lr * factor^k, not below stop_factor_lr once k >= 1
//	multifactor: k = number of steps s with num_update > s; base_lr * factor^k
//	poly:        final_lr + (base_lr-final_lr) * (1 - (num_update-warmup_steps)/(max_update-warmup_steps))^pwr,
//	             final_lr after max_update
//	cosine:      final_lr + (base_lr-final_lr) * (1 + cos(pi*(num_update-warmup_steps)/(max_update-warmup_steps))) / 2,
//	             final_lr after max_update
type LRScheduler struct {
	// Type is factor, multifactor, poly or cosine.
	Type string `json:"type"`
	// BaseLR, if set, is the base learning rate (else learning_rate).
	BaseLR *float64 `json:"base_lr,omitempty"`

	Step         int      `json:"step,omitempty"`           // factor: updates per decay (>= 1)
	Steps        []int    `json:"steps,omitempty"`          // multifactor: increasing update counts
	Factor       *float64 `json:"factor,omitempty"`         // factor, multifactor: in (0, 1], default 1
	StopFactorLR *float64 `json:"stop_factor_lr,omitempty"` // factor: floor, default 1e-8

	MaxUpdate int      `json:"max_update,omitempty"` // poly, cosine: > warmup_steps
	FinalLR   float64  `json:"final_lr,omitempty"`   // poly, cosine: default 0
	Pwr       *float64 `json:"pwr,omitempty"`        // poly: power, default 2

	WarmupSteps   int     `json:"warmup_steps,omitempty"`    // default 0: no warm-up
	WarmupBeginLR float64 `json:"warmup_begin_lr,omitempty"` // default 0
	WarmupMode    string  `json:"warmup_mode,omitempty"`     // linear (default) or constant
}

func (s *LRScheduler) factor() float64 {
	if s.Factor != nil {
		return *s.Factor
	}
	return 1
}

// validate checks s against MXNet's constructor checks (and a few it lacks:
// max_update must exceed warmup_steps, or the decay divides by zero). base is
// the optimizer's learning rate; lrGiven says whether the spec set it.
func (s *LRScheduler) validate(base float64, lrGiven bool) error {
	finite := func(v float64) bool { return !math.IsNaN(v) && math.Abs(v) <= math.MaxFloat32 }
	if s.BaseLR != nil {
		if !finite(*s.BaseLR) || *s.BaseLR < 0 {
			return fmt.Errorf("base_lr = %v must be a finite number >= 0", *s.BaseLR)
		}
		if lrGiven && *s.BaseLR != base {
			return fmt.Errorf("base_lr = %v differs from learning_rate = %v; give the base learning rate once", *s.BaseLR, base)
		}
		base = *s.BaseLR
	}
	used := map[string]bool{}
	switch s.Type {
	case "factor":
		used["step"], used["factor"], used["stop_factor_lr"] = true, true, true
		if s.Step < 1 {
			return fmt.Errorf("factor: step = %d must be >= 1", s.Step)
		}
		if s.StopFactorLR != nil && (!finite(*s.StopFactorLR) || *s.StopFactorLR < 0) {
			return fmt.Errorf("factor: stop_factor_lr = %v must be a finite number >= 0", *s.StopFactorLR)
		}
	case "multifactor":
		used["steps"], used["factor"] = true, true
		if len(s.Steps) == 0 {
			return fmt.Errorf("multifactor: steps must list at least one update count")
		}
		for i, st := range s.Steps {
			if st < 1 {
				return fmt.Errorf("multifactor: steps[%d] = %d must be >= 1", i, st)
			}
			if i > 0 && st <= s.Steps[i-1] {
				return fmt.Errorf("multifactor: steps must increase, but steps[%d] = %d follows %d", i, st, s.Steps[i-1])
			}
		}
	case "poly", "cosine":
		used["max_update"], used["final_lr"] = true, true
		if s.Type == "poly" {
			used["pwr"] = true
			if s.Pwr != nil && (!finite(*s.Pwr) || *s.Pwr <= 0) {
				return fmt.Errorf("poly: pwr = %v must be a finite number > 0", *s.Pwr)
			}
		}
		if s.MaxUpdate < 1 {
			return fmt.Errorf("%s: max_update = %d must be >= 1", s.Type, s.MaxUpdate)
		}
		if s.MaxUpdate <= s.WarmupSteps {
			return fmt.Errorf("%s: max_update = %d must be above warmup_steps = %d", s.Type, s.MaxUpdate, s.WarmupSteps)
		}
		if !finite(s.FinalLR) || s.FinalLR < 0 {
			return fmt.Errorf("%s: final_lr = %v must be a finite number >= 0", s.Type, s.FinalLR)
		}
	default:
		return fmt.Errorf("unknown type %q (known: factor, multifactor, poly, cosine)", s.Type)
	}
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"step", s.Step != 0}, {"steps", s.Steps != nil}, {"factor", s.Factor != nil},
		{"stop_factor_lr", s.StopFactorLR != nil}, {"max_update", s.MaxUpdate != 0},
		{"final_lr", s.FinalLR != 0}, {"pwr", s.Pwr != nil},
	} {
		if f.set && !used[f.name] {
			return fmt.Errorf("%s is not a parameter of the %s schedule", f.name, s.Type)
		}
	}
	if used["factor"] {
		if f := s.factor(); !finite(f) || f <= 0 || f > 1 {
			return fmt.Errorf("%s: factor = %v must be in (0, 1] (the schedule only decays)", s.Type, f)
		}
	}
	if s.WarmupSteps < 0 {
		return fmt.Errorf("warmup_steps = %d must be >= 0", s.WarmupSteps)
	}
	if s.WarmupMode != "" && s.WarmupMode != "linear" && s.WarmupMode != "constant" {
		return fmt.Errorf("warmup_mode = %q must be linear or constant", s.WarmupMode)
	}
	if !finite(s.WarmupBeginLR) || s.WarmupBeginLR < 0 {
		return fmt.Errorf("warmup_begin_lr = %v must be a finite number >= 0", s.WarmupBeginLR)
	}
	if s.WarmupBeginLR > base {
		return fmt.Errorf("warmup_begin_lr = %v is above the base learning rate %v", s.WarmupBeginLR, base)
	}
	if s.WarmupSteps == 0 && (s.WarmupBeginLR != 0 || s.WarmupMode != "") {
		return fmt.Errorf("warmup_begin_lr and warmup_mode need warmup_steps > 0")
	}
	return nil
}

// mayReachZero reports whether the schedule can give a learning rate of 0
// for some num_update >= 1 (FTRL divides by it).
func (s *LRScheduler) mayReachZero(base float64) bool {
	if s.BaseLR != nil {
		base = *s.BaseLR
	}
	if base == 0 {
		return true
	}
	if s.WarmupSteps > 1 && s.WarmupMode == "constant" && s.WarmupBeginLR == 0 {
		return true
	}
	return (s.Type == "poly" || s.Type == "cosine") && s.FinalLR == 0
}

// at returns the learning rate at num_update for base learning rate base
// (replaced by BaseLR when that is set).
func (s *LRScheduler) at(base float64, numUpdate int) float64 {
	if s.BaseLR != nil {
		base = *s.BaseLR
	}
	nu := numUpdate
	if nu < s.WarmupSteps {
		if s.WarmupMode == "constant" {
			return s.WarmupBeginLR
		}
		return s.WarmupBeginLR + (base-s.WarmupBeginLR)*float64(nu)/float64(s.WarmupSteps)
	}
	switch s.Type {
	case "factor":
		if s.Step < 1 || nu <= s.Step {
			return base
		}
		k := (nu - 1) / s.Step
		lr := base * math.Pow(s.factor(), float64(k))
		stop := 1e-8
		if s.StopFactorLR != nil {
			stop = *s.StopFactorLR
		}
		return max(lr, stop)
	case "multifactor":
		k := 0
		for _, st := range s.Steps {
			if nu > st {
				k++
			}
		}
		return base * math.Pow(s.factor(), float64(k))
	case "poly", "cosine":
		span := s.MaxUpdate - s.WarmupSteps
		if span < 1 || nu > s.MaxUpdate {
			return s.FinalLR
		}
		frac := float64(nu-s.WarmupSteps) / float64(span)
		if s.Type == "poly" {
			pwr := 2.0
			if s.Pwr != nil {
				pwr = *s.Pwr
			}
			return s.FinalLR + (base-s.FinalLR)*math.Pow(1-frac, pwr)
		}
		return s.FinalLR + (base-s.FinalLR)*(1+math.Cos(math.Pi*frac))/2
	}
	return base
}
