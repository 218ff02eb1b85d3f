package mnist

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"
)

func testSeed(t testing.TB) *rand.Rand {
	seed := time.Now().UnixNano()
	if s := os.Getenv("WEBKV_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (rerun with WEBKV_SEED=%d)", seed, seed)
	return rand.New(rand.NewSource(seed))
}

// lossAt is the mean loss at p, computed in float64 from float32 forward
// passes (what Evaluate returns).
func lossAt(t *testing.T, p *Params, x []float32, y []uint8) float64 {
	l, _, err := Evaluate(p, x, y)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestGradFiniteDifferences checks the CPU reference's backward pass
// against central differences of its forward pass, on a small model with
// dense inputs so every weight matters.
func TestGradFiniteDifferences(t *testing.T) {
	r := testSeed(t)
	s := Shape{6, 5, 4}
	const b, eps = 3, 1e-2
	x := make([]float32, b*s.In)
	for i := range x {
		x[i] = r.Float32()
	}
	// Draw weights until every hidden pre-activation is well away from the
	// ReLU kink: a central difference that straddles it sees half the slope
	// (x < 1 and one weight or bias moves by eps, so 5*eps is enough).
	var p *Params
	for {
		p, _ = InitParams(s, r.Int63())
		for i := range p.B1 {
			p.B1[i] = 0.3
		}
		if minPreActivation(p, s, x, b) > 5*eps {
			break
		}
	}
	y := []uint8{0, 3, 1}
	g, _ := NewParams(s)
	if _, _, err := Grad(p, x, y, g, nil); err != nil {
		t.Fatal(err)
	}
	for k, name := range TensorNames {
		pt, gt := p.Tensors()[k], g.Tensors()[k]
		for i := range pt {
			old := pt[i]
			pt[i] = old + eps
			lp := lossAt(t, p, x, y)
			pt[i] = old - eps
			lm := lossAt(t, p, x, y)
			pt[i] = old
			num := (lp - lm) / (2 * eps)
			if d := math.Abs(num - float64(gt[i])); d > 2e-3+2e-2*math.Abs(num) {
				t.Errorf("grad %s[%d] = %g, finite difference %g", name, i, gt[i], num)
			}
		}
	}
}

// minPreActivation is the smallest |x·W1 + b1| over the batch.
func minPreActivation(p *Params, s Shape, x []float32, b int) float64 {
	m := math.Inf(1)
	for n := range b {
		for j := range s.Hidden {
			z := float64(p.B1[j])
			for i := range s.In {
				z += float64(x[n*s.In+i]) * float64(p.W1[i*s.Hidden+j])
			}
			m = math.Min(m, math.Abs(z))
		}
	}
	return m
}

func TestGradBadInput(t *testing.T) {
	s := Shape{4, 3, 2}
	p, _ := NewParams(s)
	g, _ := NewParams(s)
	cases := []struct {
		name string
		x    []float32
		y    []uint8
		g    *Params
		want error
	}{
		{"empty batch", nil, nil, g, ErrBadBatch},
		{"short x", make([]float32, 7), make([]uint8, 2), g, ErrBadBatch},
		{"label out of range", make([]float32, 4), []uint8{2}, g, ErrBadBatch},
		{"nil grad", make([]float32, 4), []uint8{1}, nil, ErrBadParams},
		{"grad of other shape", make([]float32, 4), []uint8{1}, &Params{Shape: Shape{4, 3, 3}, W1: make([]float32, 12), B1: make([]float32, 3), W2: make([]float32, 9), B2: make([]float32, 3)}, ErrBadParams},
		{"truncated tensor", make([]float32, 4), []uint8{1}, &Params{Shape: s, W1: make([]float32, 11), B1: make([]float32, 3), W2: make([]float32, 6), B2: make([]float32, 2)}, ErrBadParams},
	}
	for _, c := range cases {
		_, _, err := Grad(p, c.x, c.y, c.g, nil)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		if c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: %v does not wrap %v", c.name, err, c.want)
		}
		t.Logf("%s: %v", c.name, err)
	}
	if _, err := NewParams(Shape{0, 3, 2}); err == nil {
		t.Error("shape with In = 0: no error")
	}
	if _, err := NewParams(Shape{3, 3, 1}); err == nil {
		t.Error("shape with one class: no error")
	}
}

func TestSplit(t *testing.T) {
	r := testSeed(t)
	labels := make([]uint8, 1003)
	for i := range labels {
		labels[i] = uint8(r.Intn(10))
	}
	for _, iid := range []bool{true, false} {
		for _, n := range []int{1, 3, 7, 1003} {
			parts, err := Split(labels, n, iid, 42)
			if err != nil {
				t.Fatal(err)
			}
			seen := make([]bool, len(labels))
			for _, p := range parts {
				if len(p) < len(labels)/n || len(p) > len(labels)/n+1 {
					t.Errorf("iid=%v n=%d: shard of %d", iid, n, len(p))
				}
				for _, i := range p {
					if seen[i] {
						t.Fatalf("iid=%v n=%d: index %d in two shards", iid, n, i)
					}
					seen[i] = true
				}
			}
			for i, ok := range seen {
				if !ok {
					t.Fatalf("iid=%v n=%d: index %d in no shard", iid, n, i)
				}
			}
			if !iid {
				// Label-sorted: each shard's labels are non-decreasing and
				// shards follow each other in label order.
				prev := uint8(0)
				for _, p := range parts {
					for _, i := range p {
						if labels[i] < prev {
							t.Fatalf("non-IID n=%d: labels not sorted across shards", n)
						}
						prev = labels[i]
					}
				}
			}
		}
	}
	parts, _ := Split(labels, 5, true, 42)
	again, _ := Split(labels, 5, true, 42)
	if fmt.Sprint(parts) != fmt.Sprint(again) {
		t.Error("IID split with the same seed differs")
	}
	if _, err := Split(labels, 0, true, 1); !errors.Is(err, ErrBadSplit) {
		t.Errorf("0 shards: err %v", err)
	}
	if _, err := Split(labels[:3], 4, true, 1); !errors.Is(err, ErrBadSplit) {
		t.Errorf("4 shards of 3 samples: err %v", err)
	}
}

func TestShardRoundTrip(t *testing.T) {
	r := testSeed(t)
	for _, n := range []int{0, 1, 5} {
		s := &Set{Images: make([]uint8, n*Pixels), Labels: make([]uint8, n)}
		r.Read(s.Images)
		for i := range s.Labels {
			s.Labels[i] = uint8(r.Intn(10))
		}
		info := ShardInfo{Index: 2, Shards: 7, IID: n%2 == 1}
		b := EncodeShard(s, info)
		got, gi, err := DecodeShard(b)
		if err != nil {
			t.Fatal(err)
		}
		if gi != info || !bytes.Equal(got.Images, s.Images) || !bytes.Equal(got.Labels, s.Labels) {
			t.Errorf("n=%d: round trip differs (info %+v, want %+v)", n, gi, info)
		}
		// Every truncation is rejected.
		for cut := 0; cut < len(b); cut += max(1, len(b)/50) {
			if _, _, err := DecodeShard(b[:cut]); !errors.Is(err, ErrBadShard) {
				t.Fatalf("n=%d: %d of %d bytes: err %v", n, cut, len(b), err)
			}
		}
	}
	bad := EncodeShard(&Set{Images: make([]uint8, Pixels), Labels: []uint8{11}}, ShardInfo{Shards: 1})
	if _, _, err := DecodeShard(bad); !errors.Is(err, ErrBadShard) {
		t.Errorf("label 11: err %v", err)
	}
	bad = EncodeShard(&Set{Images: make([]uint8, Pixels), Labels: []uint8{1}}, ShardInfo{Shards: 1})
	bad[0] = 'X'
	if _, _, err := DecodeShard(bad); !errors.Is(err, ErrBadShard) {
		t.Errorf("bad magic: err %v", err)
	}
}

func loadOrFail(t *testing.T) (*Set, *Set) {
	train, test, err := Load()
	if err != nil {
		t.Fatalf("MNIST from the GoMNIST module: %v", err)
	}
	return train, test
}

func TestLoad(t *testing.T) {
	train, test := loadOrFail(t)
	if train.Len() != 60000 || test.Len() != 10000 {
		t.Fatalf("train %d test %d samples, want 60000 and 10000", train.Len(), test.Len())
	}
	var counts [10]int
	for _, l := range train.Labels {
		counts[l]++
	}
	for d, c := range counts {
		if c < 5000 || c > 7000 {
			t.Errorf("digit %d: %d training samples", d, c)
		}
	}
}

func TestDataHandler(t *testing.T) {
	train, test := loadOrFail(t)
	srv := httptest.NewServer(DataHandler())
	defer srv.Close()
	get := func(q string) (int, []byte) {
		resp, err := http.Get(srv.URL + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	total := 0
	for i := range 4 {
		code, b := get("/data/shard?i=" + strconv.Itoa(i) + "&n=4&iid=0")
		if code != 200 {
			t.Fatalf("shard %d: %d %s", i, code, b)
		}
		s, info, err := DecodeShard(b)
		if err != nil {
			t.Fatal(err)
		}
		if info != (ShardInfo{Index: i, Shards: 4, IID: false}) {
			t.Errorf("shard %d: info %+v", i, info)
		}
		labels := map[uint8]bool{}
		for _, l := range s.Labels {
			labels[l] = true
		}
		if len(labels) > 4 {
			t.Errorf("non-IID shard %d of 4 has %d digits", i, len(labels))
		}
		total += s.Len()
	}
	if total != train.Len() {
		t.Errorf("4 shards hold %d samples, want %d", total, train.Len())
	}
	code, b := get("/data/shard?i=1&n=3&max=100")
	s, info, err := DecodeShard(b)
	if code != 200 || err != nil || s.Len() != 100 || !info.IID {
		t.Errorf("capped IID shard: code %d err %v info %+v", code, err, info)
	} else {
		labels := map[uint8]bool{}
		for _, l := range s.Labels {
			labels[l] = true
		}
		if len(labels) < 8 {
			t.Errorf("IID shard of 100 has only %d digits", len(labels))
		}
	}
	code, b = get("/data/test?max=500")
	if s, _, err := DecodeShard(b); code != 200 || err != nil || s.Len() != 500 || !bytes.Equal(s.Labels, test.Labels[:500]) {
		t.Errorf("test set: code %d err %v", code, err)
	}
	for _, q := range []string{"/data/shard", "/data/shard?n=4", "/data/shard?i=4&n=4", "/data/shard?i=0&n=0",
		"/data/shard?i=0&n=2&iid=maybe", "/data/shard?i=x&n=2", "/data/test?max=-1", "/data/shard?i=0&n=2&max=999999", "/data/test?max=10001"} {
		if code, b := get(q); code != http.StatusBadRequest {
			t.Errorf("%s: status %d (%s), want 400", q, code, b)
		}
	}
}

// TestTrainingConverges trains the CPU reference alone with plain SGD and
// checks it learns: a wrong gradient sign or scale fails here even if it
// matched itself elsewhere.
func TestTrainingConverges(t *testing.T) {
	train, test := loadOrFail(t)
	p, _ := InitParams(MLP, 1)
	g, _ := NewParams(MLP)
	bt, _ := NewBatcher(train, 64, 1)
	var ws Workspace
	steps := 300
	if testing.Short() {
		steps = 150
	}
	for range steps {
		bt.Next()
		if _, _, err := Grad(p, bt.X, bt.Y, g, &ws); err != nil {
			t.Fatal(err)
		}
		SGDStep(p, g, 0.1)
	}
	x, y := test.Head(2000).Inputs()
	loss, acc, err := Evaluate(p, x, y)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after %d steps of 64: test loss %.3f accuracy %.3f", steps, loss, acc)
	if acc < 0.85 {
		t.Errorf("test accuracy %.3f after %d SGD steps, want >= 0.85", acc, steps)
	}
}
