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

// TestWorkerLocalSteps trains alone on a local store with local steps:
// the store's optimizer is the outer one (here FedAvg: the weights become
// the local ones after each round), so 8 rounds of 10 local steps learn
// as much as 80 steps would; 8 plain steps do not get there.
func TestWorkerLocalSteps(t *testing.T) {
	cfg := Config{URL: "local", Steps: 8, Shard: -1, IID: true, Momentum: 0.9, MaxPerShard: 4000}
	plain, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.LocalSteps, cfg.Outer = 10, "fedavg"
	local, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("8 rounds: plain %.2f%%, 10 local steps %.2f%% (%s)", 100*plain.TestAcc, 100*local.TestAcc, local.Mode)
	if local.TestAcc < 0.85 || local.TestAcc < plain.TestAcc+0.05 || local.Samples != 10*plain.Samples {
		t.Errorf("local steps: %.2f%% after %d samples, plain %.2f%% after %d", 100*local.TestAcc, local.Samples, 100*plain.TestAcc, plain.Samples)
	}
	if local.Bytes != 0 {
		t.Errorf("a local store counted %d bytes of traffic", local.Bytes)
	}
}

// TestConfigValidate: bad federated settings are refused before joining.
func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{LocalSteps: -1}, {Inner: "lbfgs"}, {Outer: "yogi"}, {Aggregate: "krum"},
		{Compression: "2bit"}, {Compression: "3bit,0.1"}, {Byzantine: "sneaky"}, {OuterMomentum: 1},
	} {
		c.URL, c.Steps = "local", 1
		if _, err := Run(context.Background(), c); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	c := Config{LocalSteps: 30, Aggregate: "trimmed-mean", Compression: "2bit,0.01", LR: 0.1, Momentum: 0.9}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if m, want := c.Mode(), "local steps 30 (inner SGD lr 0.1 momentum 0.9, outer Nesterov lr 0.6 momentum 0.5), trimmed-mean, 2bit,0.01"; m != want {
		t.Errorf("mode %q, want %q", m, want)
	}
}
