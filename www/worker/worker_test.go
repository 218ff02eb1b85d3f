package worker

import (
	"context"
	"testing"
)

// TestWorkerLocal trains one worker alone on a local store.
func TestWorkerLocal(t *testing.T) {
	res, err := Run(context.Background(), Config{URL: "local", Steps: 40, Shard: -1, IID: true, Momentum: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rank != 0 || res.Workers != 1 || res.TestAcc < 0.8 {
		t.Errorf("%+v", res)
	}
	if _, err := Run(context.Background(), Config{URL: "local", Steps: 0}); err == nil {
		t.Error("0 steps: no error")
	}
	if _, err := Run(context.Background(), Config{URL: "local", Steps: 1, Shards: 2, Shard: 5}); err == nil {
		t.Error("shard 5 of 2: no error")
	}
}
