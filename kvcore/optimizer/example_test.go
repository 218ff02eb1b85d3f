package optimizer_test

import (
	"errors"
	"fmt"

	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/optimizer"
)

// A spec built in Go: SGD with momentum and weight decay, and the step
// parameters it gives the kernels for int key 3.
func ExampleSGD() {
	opt := optimizer.SGD(0.1, 0.9)
	opt.WD = new(0.0001)
	if err := opt.Validate(); err != nil {
		fmt.Println(err)
		return
	}
	var p compute.StepParams
	opt.Params("3", 1, 1, &p)
	fmt.Println(opt.Kind(), p.LR, p.Momentum, p.WD, opt.Kind().NumStates(&p))
	// Output: sgd 0.1 0.9 0.0001 1
}

// A spec read from JSON, as a dist store sends it to its servers; a
// misspelled parameter is an error, not a silent default.
func ExampleParse() {
	spec, err := optimizer.Parse([]byte(`{"name":"adam","learning_rate":0.001,
		"lr_scheduler":{"type":"factor","step":1000,"factor":0.5}}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(spec.Name, spec.LR("w", 1), spec.LR("w", 1001))

	_, err = optimizer.Parse([]byte(`{"name":"adam","beta_1":0.8}`))
	fmt.Println(errors.Is(err, optimizer.ErrInvalid))
	// Output:
	// adam 0.001 0.0005
	// true
}
