package main

import (
	"context"
	"math"
	"testing"
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
	if _, err := Train(context.Background(), Config{Epochs: 1, Devices: 4, Batch: 2, Optimizer: DefaultOptimizer}, nil, nil); err == nil {
		t.Error("batch smaller than devices: no error")
	}
	if _, err := Train(context.Background(), Config{Epochs: 1, Devices: 1, Batch: 8, Optimizer: `{"name":"sgd","lr":1}`}, nil, nil); err == nil {
		t.Error("misspelled optimizer parameter: no error")
	}
}
