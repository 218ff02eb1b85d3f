package updater

import (
	"errors"
	"strconv"
	"strings"
)

// Call is one update, with views into the module's memory that are valid
// during the call only.
type Call struct {
	Key     uint64 // the int key, or the id of a string key
	Str     bool   // a string key
	Name    string // the string key, or the int key in decimal
	T       int    // the key's update count, this update included (1 first)
	Offset  int    // first element of this part within the key
	Total   int    // elements of the whole key
	Workers int    // workers' pushes that Recv stands for (Recv is their sum)
	// Recv is the merged push (nil in Init); Stored the stored value,
	// updated in place; States the key's state arrays (Stateful rules).
	Recv   []float32
	Stored []float32
	States [][]float32
}

// Rule is an update rule.
type Rule interface {
	// Update updates c.Stored (and c.States) from c.Recv. An error refuses
	// this update only: the store reports it and the module stays loaded.
	Update(c *Call) error
}

// Stateful is a Rule with per-key state arrays, saved with the optimizer
// states and the servers' checkpoints.
type Stateful interface {
	Rule
	// NumStates is how many arrays of len(c.Stored) values c's key needs
	// (0 to 8); c has no arrays.
	NumStates(c *Call) int
	// InitStates fills c.States (zeroed) before the key's first update;
	// c.Stored holds the value, c.Recv is nil.
	InitStates(c *Call) error
}

// Configurable is a Rule that takes the module's config bytes.
type Configurable interface {
	Rule
	// Configure gets the config once, before any update.
	Configure(config []byte) error
}

var rule Rule

// Register installs r as the module's rule. Call it from an init function.
func Register(r Rule) { rule = r }

// Registered returns the registered rule (nil if none).
func Registered() Rule { return rule }

// Params parses a config of the form "name=value,name=value" (spaces
// around names and values are ignored) into numbers, checking that every
// name is one of known (nil: any).
func Params(config []byte, known ...string) (map[string]float64, error) {
	p := map[string]float64{}
	s := strings.TrimSpace(string(config))
	if s == "" {
		return p, nil
	}
	for _, f := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(f, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return nil, errors.New("config: " + strconv.Quote(f) + " is not name=value")
		}
		if len(known) > 0 && !contains(known, k) {
			return nil, errors.New("config: unknown parameter " + strconv.Quote(k) + " (known: " + strings.Join(known, ", ") + ")")
		}
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, errors.New("config: " + k + ": " + strconv.Quote(v) + " is not a number")
		}
		if _, dup := p[k]; dup {
			return nil, errors.New("config: " + k + " given twice")
		}
		p[k] = x
	}
	return p, nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
