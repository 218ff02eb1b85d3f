//go:build !js && !wasip1

package demo

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webkv/webkv/www"
	"github.com/webkv/webkv/www/worker"
)

// TestDemoTrainsTogether runs the demo with 3 native workers on the CPU
// reference for 50 rounds through a real relay (dist_sync) and checks the
// test accuracy reached: a single worker reaches 87.2% after 50 rounds of
// 64 (3200 samples) and 3 workers 88.3% after 50 rounds (9600 samples), so
// 85% leaves room for seeds and round timing while catching a broken
// reduction (a worker alone at 25 rounds is at 82.8%).
//
// It waits for the run to end, bounded only by the test binary's -timeout
// (a 3-minute bound of its own failed runs under load 26 that were slow,
// not stuck).
func TestDemoTrainsTogether(t *testing.T) {
	ctx := t.Context()
	cfg := Config{Workers: 3, Listen: "127.0.0.1:0", Out: io.Discard,
		Train: worker.Config{Steps: 50, EvalEvery: 25, Shard: -1, IID: true, Momentum: 0.9}}
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Results) != 3 {
		t.Fatalf("%d results", len(res.Results))
	}
	for i, r := range res.Results {
		t.Logf("worker %d: rank %d of %d, %d rounds, test accuracy %.4f", i, r.Rank, r.Workers, r.Steps, r.TestAcc)
		if r.Workers != 3 || r.Steps != 50 {
			t.Errorf("worker %d: %d workers, %d rounds", i, r.Workers, r.Steps)
		}
		if r.TestAcc < 0.85 {
			t.Errorf("worker %d: test accuracy %.4f, want >= 0.85", i, r.TestAcc)
		}
		// dist_sync: every worker ends with the same weights.
		if r.TestAcc != res.Results[0].TestAcc {
			t.Errorf("worker %d: accuracy %.4f differs from worker 0's %.4f", i, r.TestAcc, res.Results[0].TestAcc)
		}
	}
	if !strings.HasPrefix(res.URL, "http://127.0.0.1:") {
		t.Errorf("URL %q", res.URL)
	}
}

// TestDemoServesPage checks the page is mounted next to the relay, and
// that an interrupted demo (its context cancelled while it lingers) stops
// serving and returns.
func TestDemoServesPage(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	urlc := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		cfg := Config{Workers: 1, Listen: "127.0.0.1:0", Out: &urlWriter{c: urlc}, Linger: time.Hour,
			Train: worker.Config{Steps: 5, Shard: -1, IID: true}}
		_, err := Run(ctx, cfg)
		done <- err
	}()
	defer func() {
		cancel()
		// Cancelled while training or while lingering: both end the demo.
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("demo: %v", err)
		}
	}()
	var u string
	select {
	case u = <-urlc:
	case err := <-done:
		t.Fatalf("demo returned before printing its URL: %v", err)
	}
	for _, p := range []string{"", "app.js", "mlp/xent.wgsl", "api/config", "status"} {
		resp, err := http.Get(u + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s%s: %s", u, p, resp.Status)
		}
	}
}

// urlWriter passes the demo's output to out (if set) and sends its join
// URL on c.
type urlWriter struct {
	c      chan string
	final  chan struct{} // closed at the line that says the demo lingers, if set
	closed bool          // final is closed
	mu     sync.Mutex
	out    strings.Builder
}

var joinRE = regexp.MustCompile(`(?m)^\s*join:\s+(http://\S+)`)

func (w *urlWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.out.Write(p)
	if w.final != nil && !w.closed && strings.Contains(w.out.String(), "Ctrl-C to stop") {
		w.closed = true
		close(w.final)
	}
	if m := joinRE.FindStringSubmatch(string(p)); m != nil {
		select {
		case w.c <- m[1]:
		default:
		}
	}
	return len(p), nil
}

func (w *urlWriter) String() string { w.mu.Lock(); defer w.mu.Unlock(); return w.out.String() }

// TestDemoLingersAfterTraining: with Linger < 0 (the command's default on
// a terminal) the demo prints its result, then keeps serving the page and
// the job's final state until it is interrupted, and then returns without
// an error.
func TestDemoLingersAfterTraining(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &urlWriter{c: make(chan string, 1), final: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, Config{Workers: 1, Listen: "127.0.0.1:0", Out: out, Linger: -1,
			Train: worker.Config{Steps: 10, Shard: -1, IID: true}})
		done <- err
	}()
	var u string
	select {
	case u = <-out.c:
	case err := <-done:
		t.Fatalf("demo returned before printing its URL: %v", err)
	}
	select {
	case <-out.final:
	case err := <-done:
		t.Fatalf("demo returned before it said it lingers (Ctrl-C to stop): %v\n%s", err, out)
	}
	// Training is over: the page and the job's final state are still served.
	code, body := httpGet(t, u+"?watch")
	if code != 200 || !strings.Contains(body, `id="chart"`) {
		t.Errorf("GET %s?watch after training: %d", u, code)
	}
	var st struct {
		Job   www.JobState     `json:"job"`
		Peers []www.PeerStatus `json:"peers"`
	}
	_, body = httpGet(t, u+"api/peers")
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if !st.Job.Done || st.Job.Round != 10 || st.Job.Rounds != 10 || len(st.Peers) != 1 || st.Peers[0].State != "done" {
		t.Errorf("after training: job %+v, peers %+v", st.Job, st.Peers)
	}
	select {
	case err := <-done:
		t.Fatalf("demo returned while lingering (not interrupted): %v", err)
	default:
	}
	// It printed its result before it said it lingers.
	if s := out.String(); !strings.Contains(s, "test accuracy reached:") || strings.Index(s, "test accuracy reached:") > strings.Index(s, "Ctrl-C to stop") {
		t.Errorf("the demo lingers without its result first:\n%s", s)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("interrupted while lingering: %v, want nil (training had finished)", err)
	}
}

// TestDemoPlainOutputWhenNotATerminal: the demo's whole output to a
// non-terminal (a pipe, a CI log) is lines without escape codes, the
// progress one line per event, and it names the watch and join URLs and
// the result.
func TestDemoPlainOutputWhenNotATerminal(t *testing.T) {
	out := &urlWriter{c: make(chan string, 1)}
	_, err := Run(context.Background(), Config{Workers: 2, Listen: "127.0.0.1:0", Out: out,
		Train: worker.Config{Steps: 40, EvalEvery: 20, Shard: -1, IID: true}})
	if err != nil {
		t.Fatal(err)
	}
	s := out.String()
	t.Logf("output:\n%s", s)
	if strings.ContainsAny(s, "\x1b\r") {
		t.Errorf("escape codes or carriage returns in the output")
	}
	for _, re := range []string{`(?m)^  watch:  http://127\.0\.0\.1:\d+/\?watch `, `(?m)^  join:   http://127\.0\.0\.1:\d+/ `,
		`(?m)^native-0 \(native, (rank \d, )?cpu\): `, `(?m)^job mnist: .*round 40/40`, `(?m)^test accuracy reached: `} {
		if !regexp.MustCompile(re).MatchString(s) {
			t.Errorf("output lacks %s", re)
		}
	}
	seen := map[string]bool{}
	for _, l := range strings.Split(s, "\n") {
		if l != "" && seen[l] {
			t.Errorf("line printed twice: %q", l)
		}
		seen[l] = true
	}
}

func httpGet(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}
