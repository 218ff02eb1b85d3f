//go:build !js && !wasip1

package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// demoTab is the page's window.__demo (app.js's `me`).
type demoTab struct {
	ID      string  `json:"id"`
	Backend string  `json:"backend"`
	Rank    int     `json:"rank"`
	Workers int     `json:"workers"`
	State   string  `json:"state"`
	Round   int     `json:"round"`
	Samples int64   `json:"samples"`
	Loss    float64 `json:"loss"`
	TestAcc float64 `json:"test_acc"`
	Message string  `json:"message"`
	// Phases is the mean cost of a round's parts in ms (pull, upload,
	// batch, compute, readback, push).
	Phases map[string]float64 `json:"phases_ms"`
}

// demoProc is a running `webkv demo` whose output the test reads.
type demoProc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    strings.Builder
	url    chan string   // the join URL (a tab that opens it trains)
	watch  string        // the watch URL (read-only dashboard), under mu; printed before the join URL
	final  chan string   // the "test accuracy reached" line
	exit   chan error    // the exit status, once
	exited chan struct{} // closed after the exit
}

func (p *demoProc) log() string { p.mu.Lock(); defer p.mu.Unlock(); return p.out.String() }

// demoURLRE matches the demo's "watch:" and "join:" lines.
var demoURLRE = regexp.MustCompile(`^\s*(watch|join):\s+(http://\S+)`)

// watchURL is the demo's read-only dashboard URL.
func (p *demoProc) watchURL() string { p.mu.Lock(); defer p.mu.Unlock(); return p.watch }

// startDemo runs the webkv binary's demo subcommand, the very code `make
// demo` runs, and returns once it printed its URL.
func startDemo(t testing.TB, args ...string) (*demoProc, string) {
	t.Helper()
	bin := demoBinary(t)
	p := &demoProc{url: make(chan string, 1), final: make(chan string, 1), exit: make(chan error, 1), exited: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"demo"}, args...)...)
	p.cmd.Dir = brRepoRoot(t)
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = p.cmd.Stdout // one stream: the log shows errors in place
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			l := sc.Text()
			p.mu.Lock()
			p.out.WriteString(l + "\n")
			p.mu.Unlock()
			if m := demoURLRE.FindStringSubmatch(l); m != nil {
				if m[1] == "watch" {
					p.mu.Lock()
					p.watch = m[2]
					p.mu.Unlock()
				} else {
					select {
					case p.url <- m[2]:
					default:
					}
				}
			}
			if strings.HasPrefix(l, "test accuracy reached:") {
				p.final <- l
			}
		}
		p.exit <- p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGINT) // the demo shuts its relay down and exits
			select {
			case <-p.exited:
			case <-time.After(15 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.exited
			}
		}
		if t.Failed() {
			t.Logf("webkv demo output:\n%s", p.log())
		}
	})
	select {
	case u := <-p.url:
		return p, u
	case err := <-p.exit:
		t.Fatalf("webkv demo exited before printing its URL (%v):\n%s", err, p.log())
	case <-time.After(time.Minute):
		t.Fatalf("webkv demo printed no URL within a minute:\n%s", p.log())
	}
	return nil, ""
}

var (
	demoBinOnce sync.Once
	demoBin     string
	demoBinErr  error
)

// demoBinary builds the webkv binary once per test run (buildRelay's twin
// for benchmarks too).
func demoBinary(tb testing.TB) string {
	tb.Helper()
	demoBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "webkv-demo-bin")
		if err != nil {
			demoBinErr = err
			return
		}
		demoBin = filepath.Join(dir, "webkv")
		cmd := exec.Command("go", "build", "-o", demoBin, "./native/cmd/webkv")
		cmd.Dir = brRepoRoot(tb)
		if out, err := cmd.CombinedOutput(); err != nil {
			demoBinErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if demoBinErr != nil {
		tb.Fatal(demoBinErr)
	}
	return demoBin
}

// readDemo returns a tab's window.__demo (zero before app.js set it).
func readDemo(ctx context.Context) (demoTab, error) {
	var d demoTab
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(window.__demo || {rank: -1})`))
	if err != nil {
		return d, err
	}
	err = json.Unmarshal([]byte(s), &d)
	return d, err
}

// waitDemo polls a tab until ok holds, the page reports an error, or the
// timeout passes.
func waitDemo(t testing.TB, ctx context.Context, name string, timeout time.Duration, what string, ok func(demoTab) bool) demoTab {
	t.Helper()
	var d demoTab
	waitFor(t, timeout, 200*time.Millisecond, fmt.Sprintf("%s: %s", name, what), func() (bool, error) {
		var err error
		if d, err = readDemo(ctx); err != nil {
			return false, err
		}
		if d.State == "error" {
			return false, fatalError{fmt.Errorf("the page failed: %s", d.Message)}
		}
		if !ok(d) {
			return false, fmt.Errorf("last state %+v", d)
		}
		return true, nil
	})
	return d
}

func getJSON(u string, out any) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

var (
	finalRE  = regexp.MustCompile(`^test accuracy reached: ([0-9.]+)% on 10000 test images, after (\d+) rounds.* \(([0-9.]+) rounds/s\)`)
	phasesRE = regexp.MustCompile(`^per round on worker 0: pull ([0-9.]+) ms .*upload ([0-9.]+) ms, gradient ([0-9.]+) ms .*push ([0-9.]+) ms`)
)

// TestE2EDemoTabsAndNative is issue 5's end-to-end test: `webkv demo` (the
// relay with the page mounted, as `make demo` runs it) with one native
// worker and two headless Chromium tabs on the demo page, training the MNIST
// MLP together in one dist_sync job for 60 rounds of 64 samples per worker
// (tabs on WebGPU/SwiftShader, the native worker on wgpu-native, or the Go
// reference without an adapter); tab 2 is closed after 25 rounds.
//
// Checks: both tabs run on a WebGPU adapter and see 3 workers at the start;
// after the close, tab 1 keeps advancing, the relay's /status shows 2
// live workers and tab 1's numWorkers drops to 2 (no stall, and the
// remaining peers average over 2); tab 1 and the native worker finish all 60
// rounds; their final test accuracies on all 10000 test images are >= 85%
// and equal within 0.25 points (one model: dist_sync gives every worker
// the same weights; only kernel rounding differs); the dashboard shows
// the native worker and tab 1 done and the closed tab as left; a
// screenshot of it is saved.
//
// Why 85%: measured with `webkv worker -url local -cpu` (seed 1, IID shard,
// batch 64, SGD 0.1 momentum 0.9), one worker alone reaches 82.8% after 25
// rounds (1600 samples), 87.2% after 50 (3200), 89.8% after 60 (3840) and
// 91.8% after 140 (8960 samples, what this job processes: 3×25 + 2×35
// batches). So 85% is what a single worker reaches with a quarter of the
// job's samples (84.7% after 30 rounds, 85.9% after 35), leaves room for
// batch order and the timing of the close, and is far above what a broken
// reduction gives (lost pushes keep ~10%, a sum instead of a mean
// diverges). Runs here ended at
// 89.9% and 90.0% with the tabs' seeded batch order (86.9–90.7% before it
// was seeded), tab and native identical each time.
//
// A browser without a WebGPU adapter fails the test unless
// WEBKV_ALLOW_NO_GPU=1 (see brBrowser). The screenshot goes to
// bin/webkv-e2e-dashboard.png (ignored by git) or $WEBKV_SCREENSHOT; the
// test logs the path.
func TestE2EDemoTabsAndNative(t *testing.T) {
	integration(t)
	const e2eRounds, e2eCloseAt = 60, 25
	t0 := time.Now()
	el := func() string { return time.Since(t0).Round(100 * time.Millisecond).String() }
	js := brBuild(t)
	demo, url := startDemo(t, "-workers", "1", "-tabs", "2", "-listen", "127.0.0.1:0", "-js", js,
		"-steps", strconv.Itoa(e2eRounds), "-eval-every", "20", "-linger", "3m")
	t.Logf("demo at %s", url)

	// Two tabs of one browser, each its own target (closing one is what a
	// user closing a tab does).
	tab1 := brBrowser(t)
	tab2, close2 := chromedp.NewContext(tab1)
	defer close2()
	go func() {
		for m, err := range chromedp.Console(tab2) {
			if err != nil {
				return
			}
			t.Logf("tab 2 %s: %s", m.Type, m.Text)
		}
	}()
	for i, ctx := range []context.Context{tab1, tab2} {
		if err := brNavigate(ctx, url, chromedp.EmulateViewport(1280, 1000)); err != nil {
			t.Fatalf("tab %d: %v", i+1, err)
		}
	}
	names := []string{"tab 1", "tab 2"}
	var start [2]demoTab
	for i, ctx := range []context.Context{tab1, tab2} {
		start[i] = waitDemo(t, ctx, names[i], 2*time.Minute, "first round", func(d demoTab) bool { return d.Round >= 1 })
		t.Logf("[%s] %s: rank %d of %d, backend %q", el(), names[i], start[i].Rank, start[i].Workers, start[i].Backend)
		if !strings.HasPrefix(start[i].Backend, "webgpu:") && !brAllowNoGPU() {
			t.Fatalf("%s has no WebGPU adapter (backend %q); set WEBKV_ALLOW_NO_GPU=1 to accept the CPU fallback", names[i], start[i].Backend)
		}
		if start[i].Workers != 3 {
			t.Errorf("%s sees %d workers at the start, want 3 (2 tabs + 1 native)", names[i], start[i].Workers)
		}
	}

	// Close tab 2 mid-training.
	d2 := waitDemo(t, tab2, "tab 2", 2*time.Minute, fmt.Sprintf("round %d", e2eCloseAt), func(d demoTab) bool { return d.Round >= e2eCloseAt })
	before, err := readDemo(tab1)
	if err != nil {
		t.Fatal(err)
	}
	close2()
	closed := time.Now()
	t.Logf("[%s] closed tab 2 at its round %d (tab 1 at round %d)", el(), d2.Round, before.Round)
	if before.Round >= e2eRounds-2 {
		t.Fatalf("tab 1 was already at round %d of %d when tab 2 closed: nothing left to check", before.Round, e2eRounds)
	}
	// No stall: the others go on. A tab whose page sent its Leave frame
	// on pagehide is dropped at once; one that did not get to send it is
	// dropped after the demo relay's 5 s silence timeout (the relay keeps a
	// disconnected worker that long so that it can resume). 20 s leaves
	// room for that, an evaluation and this loaded machine, and still
	// catches a job that waits for the closed tab for good.
	after := waitDemo(t, tab1, "tab 1", 20*time.Second, "progress after tab 2 closed", func(d demoTab) bool { return d.Round >= before.Round+2 })
	t.Logf("tab 1 went from round %d to %d in %v after tab 2 closed", before.Round, after.Round, time.Since(closed).Round(time.Millisecond))

	// The relay dropped the closed tab from the job (it did not wait for
	// the silence timeout).
	var st struct {
		Jobs []struct {
			Job         string `json:"job"`
			LiveWorkers int64  `json:"live_workers"`
			Rounds      uint64 `json:"rounds"`
		} `json:"jobs"`
	}
	waitFor(t, 10*time.Second, 200*time.Millisecond, "the relay dropping the closed tab", func() (bool, error) {
		if err := getJSON(url+"status", &st); err != nil {
			return false, fatalError{err}
		}
		for _, j := range st.Jobs {
			if j.Job == "mnist" && j.LiveWorkers == 2 {
				return true, nil
			}
		}
		return false, fmt.Errorf("jobs %+v, want 2 live workers in job mnist", st.Jobs)
	})

	// Both remaining peers finish.
	fin := waitDemo(t, tab1, "tab 1", 3*time.Minute, "end of training", func(d demoTab) bool { return d.State == "done" })
	t.Logf("[%s] tab 1: done after %d rounds, test accuracy %.2f%% (10000 test images), backend %q, numWorkers %d at the end", el(), fin.Round, 100*fin.TestAcc, fin.Backend, fin.Workers)
	if fin.Round != e2eRounds {
		t.Errorf("tab 1 ended after %d rounds, want %d", fin.Round, e2eRounds)
	}
	if fin.Workers != 2 {
		t.Errorf("tab 1 sees %d workers at the end, want 2 (the relay's membership notice after the close)", fin.Workers)
	}
	if fin.TestAcc < 0.85 {
		t.Errorf("tab 1: test accuracy %.4f, want >= 0.85", fin.TestAcc)
	}
	var line string
	select {
	case line = <-demo.final:
	case err := <-demo.exit:
		t.Fatalf("webkv demo exited (%v) without a final accuracy", err)
	case <-time.After(time.Minute):
		t.Fatal("the native worker did not finish within a minute of tab 1")
	}
	t.Logf("[%s] demo: %s", el(), line)
	m := finalRE.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("cannot parse the demo's final line %q", line)
	}
	acc, _ := strconv.ParseFloat(m[1], 64)
	if rounds, _ := strconv.Atoi(m[2]); rounds != e2eRounds {
		t.Errorf("native worker: %d rounds, want %d", rounds, e2eRounds)
	}
	if acc < 85 {
		t.Errorf("native worker: test accuracy %.2f%%, want >= 85%%", acc)
	}
	// One model: the tab and the native worker end with the same weights
	// and evaluate them on the same 10000 images; only the float rounding
	// of their kernels (SwiftShader vs wgpu-native or Go) may flip a few
	// near-tied predictions.
	if d := math.Abs(acc - 100*fin.TestAcc); d > 0.25 {
		t.Errorf("tab 1 ends at %.2f%% and the native worker at %.2f%%: not the same model", 100*fin.TestAcc, acc)
	}

	// The dashboard, for a person to look at: wait for a refresh that shows
	// the native worker and this tab done, then save it.
	shown, err := chromedp.Run(tab1, chromedp.Poll[string](`(() => {
		const rows = [...document.querySelectorAll('#peers tr')].map((r) => r.innerText);
		const done = (re) => rows.some((r) => re.test(r) && /\bdone\b/.test(r));
		return done(/^native-0/) && done(/\(this tab\)/) ? rows.join('\n') : null; })()`,
		chromedp.WithPollingInterval(200*time.Millisecond), chromedp.WithPollingTimeout(10*time.Second)))
	if err != nil {
		t.Errorf("the dashboard never showed the native worker and tab 1 done: %v", err)
	}
	t.Logf("dashboard peers table:\n%s", shown)
	for _, want := range []string{"native-0", "browser", "left", "webgpu"} {
		if !strings.Contains(shown, want) && (want != "webgpu" || !brAllowNoGPU()) {
			t.Errorf("the dashboard's peer table lacks %q", want)
		}
	}
	png, err := chromedp.Run(tab1, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := os.Getenv("WEBKV_SCREENSHOT")
	if path == "" {
		path = filepath.Join(brRepoRoot(t), "bin", "webkv-e2e-dashboard.png")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("dashboard screenshot (%d bytes): %s", len(png), path)
}

// BenchmarkE2EDemoRounds measures the demo's rounds per second with 1, 2
// and 4 peers (one native worker, plus 0, 1 or 3 headless Chromium tabs on
// WebGPU/SwiftShader) over 40 rounds of 64 samples per peer, and where a
// round's time goes: the native worker's pull (which waits for the round),
// upload, gradient (kernels + readback) and push, and the first tab's pull,
// upload, compute, readback and push (ms per round). The issue names no
// baseline for these: rounds/s with 2 and 4 peers are also reported as a
// ratio to the 1-peer run of the same benchmark (rel-1peer), that is the
// cost of synchronizing with slower peers. Run it alone (each run is a
// whole demo): go test -run '^$' -bench E2EDemoRounds -benchtime 1x ./tests/
func BenchmarkE2EDemoRounds(b *testing.B) {
	const rounds = 40
	js := brBuild(b)
	base := 0.0
	for _, tabs := range []int{0, 1, 3} {
		b.Run(fmt.Sprintf("peers=%d", tabs+1), func(b *testing.B) {
			var rps float64
			for range b.N {
				demo, url := startDemo(b, "-workers", "1", "-tabs", strconv.Itoa(tabs), "-listen", "127.0.0.1:0", "-js", js,
					"-steps", strconv.Itoa(rounds), "-eval-every", "0", "-linger", "1m")
				var ctxs []context.Context
				if tabs > 0 {
					first := brBrowser(b)
					ctxs = append(ctxs, first)
					for range tabs - 1 {
						c, cancel := chromedp.NewContext(first)
						b.Cleanup(cancel)
						ctxs = append(ctxs, c)
					}
				}
				for i, c := range ctxs {
					if err := brNavigate(c, url); err != nil {
						b.Fatalf("tab %d: %v", i+1, err)
					}
				}
				var line string
				select {
				case line = <-demo.final:
				case err := <-demo.exit:
					b.Fatalf("webkv demo exited (%v):\n%s", err, demo.log())
				case <-time.After(5 * time.Minute):
					b.Fatalf("no result within 5 minutes:\n%s", demo.log())
				}
				m := finalRE.FindStringSubmatch(line)
				if m == nil {
					b.Fatalf("cannot parse %q", line)
				}
				rps, _ = strconv.ParseFloat(m[3], 64)
				var ph []string
				for _, l := range strings.Split(demo.log(), "\n") {
					if ph = phasesRE.FindStringSubmatch(l); ph != nil {
						break
					}
				}
				if ph != nil {
					for i, name := range []string{"native-pull", "native-upload", "native-grad", "native-push"} {
						v, _ := strconv.ParseFloat(ph[i+1], 64)
						b.ReportMetric(v, name+"-ms")
					}
				}
				if len(ctxs) > 0 {
					d := waitDemo(b, ctxs[0], "tab 1", time.Minute, "end of training", func(d demoTab) bool { return d.State == "done" })
					for _, k := range []string{"pull", "upload", "compute", "readback", "push"} {
						b.ReportMetric(d.Phases[k], "tab-"+k+"-ms")
					}
				}
				b.Logf("%s", line)
			}
			b.ReportMetric(rps, "rounds/s")
			b.ReportMetric(rps*float64(tabs+1)*64, "samples/s")
			if tabs == 0 {
				base = rps
			} else if base > 0 {
				b.ReportMetric(rps/base, "rel-1peer")
			}
		})
	}
}
