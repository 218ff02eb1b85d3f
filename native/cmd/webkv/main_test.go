//go:build !js && !wasip1

package main

import (
	"errors"
	"io"
	"math"
	"math/rand"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/webkv/webkv/native"
	"github.com/webkv/webkv/www/mnist"
)

func TestMain(m *testing.M) {
	if os.Getenv("XDG_RUNTIME_DIR") == "" { // Mesa's Vulkan loader wants one
		if dir, err := os.MkdirTemp("", "webkv-xdg-"); err == nil {
			os.Setenv("XDG_RUNTIME_DIR", dir)
			code := m.Run()
			os.RemoveAll(dir)
			os.Exit(code)
		}
	}
	os.Exit(m.Run())
}

func TestCommands(t *testing.T) {
	for _, name := range []string{"relay", "worker", "demo", "version", "jobs"} {
		if _, ok := commands[name]; !ok {
			t.Errorf("no %q subcommand", name)
		}
	}
	for name, args := range map[string][]string{
		"worker": {"-no-such-flag"},
		"demo":   {"stray-argument"},
		"relay":  {"-log-level", "loud"},
	} {
		if code := commands[name].run(args); code != 2 {
			t.Errorf("webkv %s %q: exit code %d, want 2", name, args, code)
		}
	}
	if code := commands["demo"].run([]string{"-workers", "0"}); code != 2 {
		t.Errorf("webkv demo -workers 0: exit code %d, want 2", code)
	}
}

// TestChooseEngines: -cpu gives the CPU reference; otherwise the workers
// share one WebGPU device (lavapipe here) and every engine computes the
// CPU reference's gradient. Without cgo the command says it has no WebGPU
// and falls back to the CPU.
func TestChooseEngines(t *testing.T) {
	if e := chooseEngines(true, 2, 64, io.Discard); e.list != nil || !strings.HasPrefix(e.backend, "cpu") {
		t.Errorf("-cpu: %d engines on %q", len(e.list), e.backend)
	}
	var out strings.Builder
	e := chooseEngines(false, 2, 64, &out)
	defer func() {
		if err := e.close(); err != nil {
			t.Error(err)
		}
	}()
	if e.list == nil {
		_, err := openGPU(1, 64)
		if errors.Is(err, native.ErrNoCgo) || (errors.Is(err, native.ErrNoAdapter) && os.Getenv("WEBKV_ALLOW_NO_GPU") == "1") {
			t.Skipf("no WebGPU here: %s", out.String())
		}
		t.Fatalf("no engines: %s", out.String())
	}
	t.Logf("%s; %s", e.backend, out.String())
	if len(e.list) != 2 || !strings.HasPrefix(e.backend, "webgpu: ") {
		t.Fatalf("%d engines on %q", len(e.list), e.backend)
	}
	r := rand.New(rand.NewSource(1))
	p, err := mnist.InitParams(mnist.MLP, r.Int63())
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float32, 16*mnist.Pixels)
	y := make([]uint8, 16)
	for i := range x {
		x[i] = r.Float32()
	}
	for i := range y {
		y[i] = uint8(r.Intn(10))
	}
	want, _ := mnist.NewParams(mnist.MLP)
	wl, _, err := mnist.Grad(p, x, y, want, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, en := range e.list {
		if err := en.SetParams(p); err != nil {
			t.Fatal(err)
		}
		got, _ := mnist.NewParams(mnist.MLP)
		gl, _, err := en.Grad(x, y, got)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(gl-wl) > 1e-4*math.Max(1, wl) {
			t.Errorf("engine %d: loss %g, CPU reference %g", i, gl, wl)
		}
		for k, tw := range want.Tensors() {
			for j, v := range tw {
				if d := math.Abs(float64(got.Tensors()[k][j] - v)); d > 1e-4+1e-3*math.Abs(float64(v)) {
					t.Fatalf("engine %d: %s[%d] = %g, CPU reference %g", i, mnist.TensorNames[k], j, got.Tensors()[k][j], v)
				}
			}
		}
	}
}

// TestWorkerAlone runs `webkv worker -url local -cpu` for a few steps.
func TestWorkerAlone(t *testing.T) {
	if code := commands["worker"].run([]string{"-url", "local", "-cpu", "-steps", "5", "-eval-every", "0"}); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// Issue 11, problem 2: a worker pointed at a relay that is not running
// exits at once with an error that names the address and says why (it
// used to wait two minutes in silence). The bound of 10 s is the issue's
// acceptance figure; the worker takes milliseconds.
func TestWorkerNoRelay(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = w
	done := make(chan int, 1)
	go func() { done <- commands["worker"].run([]string{"-url", "ws://127.0.0.1:9", "-cpu", "-steps", "5"}) }()
	var code int
	select {
	case code = <-done:
	case <-time.After(10 * time.Second):
		os.Stderr = stderr
		t.Fatal("webkv worker -url ws://127.0.0.1:9 still runs after 10 s")
	}
	os.Stderr = stderr
	w.Close()
	out, _ := io.ReadAll(r)
	if code != 1 || !strings.Contains(string(out), "127.0.0.1:9") || !strings.Contains(string(out), "unreachable") {
		t.Fatalf("exit code %d, stderr %q; want 1 and an unreachable error naming the address", code, out)
	}
	t.Logf("%s", out)
}
