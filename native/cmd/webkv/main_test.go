//go:build !js && !wasip1

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/webkv/webkv/native"
	"github.com/webkv/webkv/www/demo"
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

// TestBenchPicksTheFaster: a round of n workers costs n steps on the
// shared WebGPU device (they take turns) and ceil(n/cores) steps on the
// CPU, and the faster side is picked, with the figures in the summary.
func TestBenchPicksTheFaster(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		b       bench
		gpu     bool
		speedup float64
	}{
		{bench{GPUStep: 260 * ms, CPUStep: 3500 * time.Microsecond, Workers: 2, Cores: 2, Batch: 64}, false, 520.0 / 3.5}, // llvmpipe here: 520 vs 3.5 ms
		{bench{GPUStep: ms, CPUStep: 3500 * time.Microsecond, Workers: 2, Cores: 2, Batch: 64}, true, 1.75},               // a real GPU: 2 vs 3.5 ms
		{bench{GPUStep: 2 * ms, CPUStep: 3 * ms, Workers: 4, Cores: 1, Batch: 64}, true, 1.5},                             // 8 vs 12 ms
		{bench{GPUStep: 2 * ms, CPUStep: 3 * ms, Workers: 4, Cores: 8, Batch: 64}, false, 8.0 / 3},                        // 8 vs 3 ms
	} {
		if got := c.b.gpuFaster(); got != c.gpu {
			t.Errorf("%+v: gpuFaster %v, want %v", c.b, got, c.gpu)
		}
		if got := c.b.speedup(); math.Abs(got-c.speedup) > 1e-9*c.speedup {
			t.Errorf("%+v: speedup %g, want %g", c.b, got, c.speedup)
		}
		s := c.b.summary("webgpu: test adapter")
		want := "the workers compute on the CPU"
		if c.gpu {
			want = "the workers compute on WebGPU"
		}
		if !strings.Contains(s, want) || !strings.Contains(s, "webgpu: test adapter") || !strings.Contains(s, fmt.Sprintf("%.0f× faster", c.speedup)) {
			t.Errorf("summary %q lacks %q, the adapter or the speed-up", s, want)
		}
	}
}

// TestChooseEngines: -cpu gives the CPU reference. Otherwise the command
// opens the WebGPU engines, times them against the CPU reference and
// keeps the faster, printing both figures; the WebGPU engines it keeps
// compute the CPU reference's gradient. On a CPU adapter (lavapipe here)
// the CPU is faster by two orders of magnitude (a step of 64 samples:
// 260-760 ms on llvmpipe, 3.5-8 ms in Go, measured under load 4), so the
// CPU must win there. Without cgo the command says it has no WebGPU and
// falls back to the CPU.
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
	t.Logf("%s; %s", e.backend, out.String())
	if !strings.Contains(out.String(), "engine check: a gradient step of 64 samples takes") {
		_, err := openGPU(1, 64)
		if errors.Is(err, native.ErrNoCgo) || (errors.Is(err, native.ErrNoAdapter) && os.Getenv("WEBKV_ALLOW_NO_GPU") == "1") {
			t.Skipf("no WebGPU here: %s", out.String())
		}
		t.Fatalf("no engine check: %s", out.String())
	}
	if e.cpuAdapter {
		if e.list != nil || !strings.HasPrefix(e.backend, "cpu") || !strings.Contains(out.String(), "compute on the CPU") {
			t.Fatalf("on a CPU adapter the workers got %q (%d engines), want the CPU", e.backend, len(e.list))
		}
	}
	if e.list == nil {
		return
	}
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

// TestBenchEnginesRefusesAWrongGradient: an engine whose gradient differs
// from the CPU reference fails the engine check however fast it is.
func TestBenchEnginesRefusesAWrongGradient(t *testing.T) {
	cpu, err := mnist.NewCPU(mnist.MLP)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := benchEngines(cpu, 2, 64, 2); err != nil {
		t.Fatalf("the CPU reference against itself: %v", err)
	}
	if _, err := benchEngines(wrongGrad{cpu}, 2, 64, 2); err == nil || !strings.Contains(err.Error(), "CPU reference") {
		t.Fatalf("a wrong gradient passed the check: %v", err)
	}
}

// wrongGrad doubles one gradient entry.
type wrongGrad struct{ *mnist.CPU }

func (w wrongGrad) Grad(x []float32, y []uint8, g *mnist.Params) (float64, int, error) {
	l, c, err := w.CPU.Grad(x, y, g)
	g.B2[3] = 2*g.B2[3] + 1
	return l, c, err
}

// TestLingerFlag: -linger reads as it says: true until Ctrl-C, false not
// at all, a duration that long (-linger 3m as well as -linger=3m); not
// given, "auto".
func TestLingerFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		d    time.Duration
		auto bool
	}{
		{nil, 0, true},
		{[]string{"-linger=true"}, -1, false},
		{[]string{"-linger", "true"}, -1, false},
		{[]string{"-linger=false"}, 0, false},
		{[]string{"-linger=90s"}, 90 * time.Second, false},
		{[]string{"-linger", "3m", "-workers", "1"}, 3 * time.Minute, false},
		{[]string{"-linger=auto"}, 0, true},
	} {
		fs := flag.NewFlagSet("demo", flag.ContinueOnError)
		l := lingerFlag{auto: true}
		fs.Var(&l, "linger", "")
		fs.Int("workers", 2, "")
		if err := fs.Parse(c.args); err != nil {
			t.Errorf("%q: %v", c.args, err)
			continue
		}
		if l.d != c.d || l.auto != c.auto {
			t.Errorf("%q: linger %v auto %v, want %v %v", c.args, l.d, l.auto, c.d, c.auto)
		}
	}
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	l := lingerFlag{auto: true}
	fs.Var(&l, "linger", "")
	if err := fs.Parse([]string{"-linger=soon"}); err == nil {
		t.Error("-linger=soon accepted")
	}
}

// TestWGPUStartupWarningsFiltered runs the command's WebGPU bring-up in a
// child process and reads its stderr: wgpu-native's start-up warnings of a
// headless machine ("No config found!", ...) do not reach it.
func TestWGPUStartupWarningsFiltered(t *testing.T) {
	if os.Getenv("WEBKV_TEST_OPEN_GPU") == "1" {
		e, err := openGPU(1, 64)
		if err != nil {
			fmt.Fprintln(os.Stdout, "openGPU:", err)
			return
		}
		fmt.Fprintln(os.Stdout, "opened", e.backend)
		if err := e.close(); err != nil {
			fmt.Fprintln(os.Stdout, "close:", err)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestWGPUStartupWarningsFiltered$", "-test.count=1")
	cmd.Env = append(os.Environ(), "WEBKV_TEST_OPEN_GPU=1")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	t.Logf("child: %s", strings.TrimSpace(stdout.String()))
	if !strings.Contains(stdout.String(), "opened webgpu: ") {
		if strings.Contains(stdout.String(), native.ErrNoCgo.Error()) || os.Getenv("WEBKV_ALLOW_NO_GPU") == "1" {
			t.Skipf("no WebGPU here: %s", stdout.String())
		}
		t.Fatalf("the child opened no device: %s", stdout.String())
	}
	for _, noise := range []string{"No config found!", "No windowing system present", "VK_EXT_swapchain_colorspace"} {
		if strings.Contains(stderr.String(), noise) {
			t.Errorf("stderr has wgpu's %q:\n%s", noise, stderr.String())
		}
	}
}

// TestWorkerAlone runs `webkv worker -url local -cpu` for a few steps.
func TestWorkerAlone(t *testing.T) {
	if code := commands["worker"].run([]string{"-url", "local", "-cpu", "-steps", "5", "-eval-every", "0"}); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// TestREADMEDemoFlags: every flag the README gives for `make demo` is a
// flag of `webkv demo`, every value it shows parses, and each form does
// something: a bare boolean flag must not be one that is already true by
// default (the README once said `-iid`, which defaults to true), and a
// flag=value form must name a value other than the default.
func TestREADMEDemoFlags(t *testing.T) {
	b, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	i := strings.Index(readme, "- `make demo`:")
	if i < 0 {
		t.Fatal("README has no `make demo` item")
	}
	item := readme[i:]
	if j := strings.Index(item[2:], "\n- "); j >= 0 {
		item = item[:j+2]
	}
	flagRE := regexp.MustCompile("(?:`|'| )(-[a-z][a-z-]*)(=[^` ']+)?")
	n := 0
	for _, m := range flagRE.FindAllStringSubmatch(item, -1) {
		name, value := m[1][1:], strings.TrimPrefix(m[2], "=")
		n++
		var c demo.Config
		var cpu bool
		var linger lingerFlag
		fs := demoFlags(&c, &cpu, &linger)
		f := fs.Lookup(name)
		if f == nil {
			t.Errorf("README: -%s is not a flag of webkv demo", name)
			continue
		}
		if value == "" {
			if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() && f.DefValue == "true" {
				t.Errorf("README: -%s alone does nothing: it defaults to true (say -%s=false)", name, name)
			}
			continue
		}
		changes := false
		for _, v := range strings.Split(value, "|") {
			if err := fs.Set(name, v); err != nil {
				t.Errorf("README: -%s=%s: %v", name, v, err)
			}
			changes = changes || v != f.DefValue
		}
		if !changes {
			t.Errorf("README: -%s=%s is the default", name, value)
		}
	}
	if n < 6 {
		t.Errorf("found %d flags in the README's make demo item, want >= 6:\n%s", n, item)
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
