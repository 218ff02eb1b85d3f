//go:build !js && !wasip1

package tests

// Multi-process relay tests: the relay is the real `webkv-relay` binary (the
// flags of `webkv relay`) and every worker is a separate process (this test
// binary re-executed), talking over 127.0.0.1 sockets. They cover what goroutines cannot: a worker
// process killed mid-round and a relay killed with SIGKILL and restarted on
// its data directory.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/webkv/webkv/relay"
	"github.com/webkv/webkv/relay/relaytest"
)

const relayWorkerEnv = "WEBKV_RELAY_TEST_WORKER"

// relayWorkerSpec is what a worker process is told.
type relayWorkerSpec struct {
	URL, Typ, Job, Token string
	Workload             relaytest.Workload
}

// TestRelayWorkerProcess is the body of a worker process; it does nothing
// in a normal test run.
func TestRelayWorkerProcess(t *testing.T) {
	js := os.Getenv(relayWorkerEnv)
	if js == "" {
		t.Skip("only runs as a worker process of the relay tests")
	}
	var spec relayWorkerSpec
	if err := json.Unmarshal([]byte(js), &spec); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	res, err := relaytest.RunWorker(ctx, spec.URL, spec.Typ, &spec.Workload, relay.DialOptions{
		Job: spec.Job, Token: spec.Token, Logger: log, ReconnectMin: 20 * time.Millisecond, ReconnectMax: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(res)
	fmt.Printf("RESULT %s\n", b)
}

var (
	relayBinOnce sync.Once
	relayBin     string
	relayBinErr  error
)

// buildRelay builds the pure-Go relay binary (relay/cmd/webkv-relay, the
// one meant for servers, with CGO_ENABLED=0 as in a container) once per
// test run.
func buildRelay(t *testing.T) string {
	t.Helper()
	relayBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "webkv-relay-bin")
		if err != nil {
			relayBinErr = err
			return
		}
		relayBin = filepath.Join(dir, "webkv-relay")
		cmd := exec.Command("go", "build", "-o", relayBin, "../relay/cmd/webkv-relay")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			relayBinErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if relayBinErr != nil {
		t.Fatal(relayBinErr)
	}
	return relayBin
}

// relayProc is a running `webkv-relay`.
type relayProc struct {
	cmd  *exec.Cmd
	url  string
	addr string
	logs *strings.Builder
	mu   *sync.Mutex
}

// startRelayProc starts the relay binary and waits for the URL it prints.
func startRelayProc(t *testing.T, args ...string) *relayProc {
	t.Helper()
	bin := buildRelay(t)
	cmd := exec.Command(bin, append([]string{"-log-level", "warn", "-admin-token", testAdminToken}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &relayProc{cmd: cmd, logs: &strings.Builder{}, mu: &sync.Mutex{}}
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		b, _ := io.ReadAll(stderr)
		p.mu.Lock()
		p.logs.Write(b)
		p.mu.Unlock()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if s := sc.Text(); strings.HasPrefix(s, "webkv relay listening on ") {
				line <- strings.TrimPrefix(s, "webkv relay listening on ")
			}
		}
		close(line)
	}()
	select {
	case u, ok := <-line:
		if !ok {
			cmd.Wait()
			p.mu.Lock()
			defer p.mu.Unlock()
			t.Fatalf("relay exited before it was ready:\n%s", p.logs)
		}
		p.url = u
		p.addr = strings.TrimPrefix(u, "ws://")
	case <-time.After(30 * time.Second):
		t.Fatal("relay did not print its URL")
	}
	return p
}

// testAdminToken is the relay processes' admin token (for /status).
const testAdminToken = "test-admin"

// status reads the relay's /status with the admin token.
func (p *relayProc) status() (*relay.Status, error) {
	req, err := http.NewRequest("GET", "http://"+p.addr+"/status", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st relay.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, err
	}
	return &st, nil
}

// waitRounds waits until the relay's /status shows that job closed at
// least n rounds (summed over keys), so faults land in the middle of
// training, and returns the job's status at that moment.
func (p *relayProc) waitRounds(t *testing.T, job string, n uint64) relay.JobStatus {
	t.Helper()
	var js relay.JobStatus
	waitFor(t, 30*time.Second, 10*time.Millisecond, fmt.Sprintf("job %s reaching %d rounds", job, n), func() (bool, error) {
		st, err := p.status()
		if err != nil {
			return false, err
		}
		for _, j := range st.Jobs {
			if j.Job == job {
				js = j
				return j.Rounds >= n, fmt.Errorf("%d rounds", j.Rounds)
			}
		}
		return false, fmt.Errorf("no job %s", job)
	})
	return js
}

// workerProc is a running worker process.
type workerProc struct {
	cmd *exec.Cmd
	out strings.Builder
	err strings.Builder
}

func startWorkerProc(t *testing.T, spec relayWorkerSpec) *workerProc {
	t.Helper()
	js, _ := json.Marshal(spec)
	w := &workerProc{}
	w.cmd = exec.Command(os.Args[0], "-test.run=^TestRelayWorkerProcess$", "-test.v=false")
	w.cmd.Env = append(os.Environ(), relayWorkerEnv+"="+string(js))
	w.cmd.Stdout, w.cmd.Stderr = &w.out, &w.err
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.cmd.Process.Kill()
		w.cmd.Wait()
	})
	return w
}

// result waits for the worker and parses its RESULT line.
func (w *workerProc) result() (*relaytest.Result, error) {
	err := w.cmd.Wait()
	for _, l := range strings.Split(w.out.String(), "\n") {
		if s, ok := strings.CutPrefix(l, "RESULT "); ok {
			var r relaytest.Result
			if err := json.Unmarshal([]byte(s), &r); err != nil {
				return nil, err
			}
			return &r, nil
		}
	}
	return nil, fmt.Errorf("worker failed (%v):\n%s\n%s", err, w.out.String(), w.err.String())
}

// TestRelayProcesses: N worker processes (up to 16) give exactly the
// single-process result through the relay binary, for several optimizers,
// with Push+Pull and with PushPull; two jobs run on one relay at once.
func TestRelayProcesses(t *testing.T) {
	integration(t)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := startRelayProc(t, "-listen", "127.0.0.1:0", "-token", "p16=tok16", "-token", "p5=tok5")
	jobs := []struct {
		job, token string
		w          relaytest.Workload
	}{
		{"p16", "tok16", relaytest.Workload{Seed: seed, Workers: 16, Rounds: 3, Sizes: []int{100, 7},
			Optimizer: json.RawMessage(`{"name":"adam","learning_rate":0.01}`)}},
		{"p5", "tok5", relaytest.Workload{Seed: seed + 1, Workers: 5, Rounds: 4, Sizes: []int{64, 3, 9}, PushPull: true,
			Optimizer: json.RawMessage(`{"name":"lamb","learning_rate":0.01}`)}},
	}
	type run struct {
		job  string
		want [][]float32
		ws   []*workerProc
	}
	var runs []run
	for _, j := range jobs {
		want, err := j.w.Reference()
		if err != nil {
			t.Fatal(err)
		}
		rn := run{job: j.job, want: want}
		for i := 0; i < j.w.Workers; i++ {
			rn.ws = append(rn.ws, startWorkerProc(t, relayWorkerSpec{URL: r.url, Typ: "dist_sync", Job: j.job, Token: j.token, Workload: j.w}))
		}
		runs = append(runs, rn)
	}
	for _, rn := range runs {
		ranks := map[int]bool{}
		for _, wp := range rn.ws {
			res, err := wp.result()
			if err != nil {
				t.Fatal(err)
			}
			ranks[res.Rank] = true
			if err := relaytest.Compare(res.Values, rn.want); err != nil {
				t.Fatalf("job %s rank %d: %v", rn.job, res.Rank, err)
			}
		}
		if len(ranks) != len(rn.ws) {
			t.Fatalf("job %s: ranks %v, want %d distinct", rn.job, ranks, len(rn.ws))
		}
	}
}

// TestRelayKillWorker: a worker process killed mid-training (SIGKILL)
// stops pushing; with a quorum of 3 of 4 and a 200 ms round deadline, the
// survivors' rounds close at the deadline (sums rescaled) while the dead
// worker is still a member: when the last round closed, the relay's
// /status shows rescaled rounds and no removed worker, so the rounds did
// not wait for the 20 s silence timeout. The final barrier, which needs
// every live member, completes once the dead worker is removed. The
// survivors finish and agree.
func TestRelayKillWorker(t *testing.T) {
	integration(t)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	w := relaytest.Workload{Seed: seed, Workers: 4, Rounds: 12, Sizes: []int{50}, Pause: 50 * time.Millisecond,
		Optimizer: json.RawMessage(`{"name":"sgd","learning_rate":0.1}`)}
	r := startRelayProc(t, "-listen", "127.0.0.1:0", "-workers", "4", "-heartbeat", "100ms", "-timeout", "20s", "-round-deadline", "200ms", "-quorum", "3")
	var ws []*workerProc
	for i := 0; i < w.Workers; i++ {
		ws = append(ws, startWorkerProc(t, relayWorkerSpec{URL: r.url, Typ: "dist_sync", Job: "kill", Workload: w}))
	}
	r.waitRounds(t, "kill", 3)
	victim := ws[2]
	victim.cmd.Process.Signal(syscall.SIGKILL)
	start := time.Now()
	st := r.waitRounds(t, "kill", uint64(w.Rounds))
	t.Logf("all %d rounds closed %v after the kill: %d rescaled, %d workers removed", w.Rounds, time.Since(start), st.Rescaled, st.Removed)
	if st.Removed != 0 {
		t.Fatalf("the dead worker was removed before the rounds closed: they waited for the silence timeout, not the deadline (%+v)", st)
	}
	if st.Rescaled == 0 {
		t.Fatalf("no round closed at the deadline with the quorum (%+v)", st)
	}
	var first []float32
	for i, wp := range ws {
		if wp == victim {
			continue
		}
		res, err := wp.result()
		if err != nil {
			t.Fatalf("survivor %d: %v", i, err)
		}
		if first == nil {
			first = res.Values[0]
		} else if err := relaytest.Compare(res.Values, [][]float32{first}); err != nil {
			t.Fatalf("survivors disagree: %v", err)
		}
	}
	t.Logf("survivors finished %v after the kill", time.Since(start))
}

// TestRelayKill9Restart: the relay is killed with SIGKILL mid-training and
// restarted on the same data directory and address. Workers reconnect,
// resume their ranks and resend unanswered requests; because the relay
// acknowledges an update only after it is checkpointed (-durable), no
// acknowledged update is lost and none is applied twice: the final values
// equal the single-process result bit for bit.
func TestRelayKill9Restart(t *testing.T) {
	integration(t)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	w := relaytest.Workload{Seed: seed, Workers: 3, Rounds: 16, Sizes: []int{64, 5}, Pause: 40 * time.Millisecond,
		Optimizer: json.RawMessage(`{"name":"adam","learning_rate":0.01}`)}
	dir := t.TempDir()
	args := []string{"-data", dir, "-durable", "-workers", "3", "-heartbeat", "200ms", "-timeout", "10s"}
	r := startRelayProc(t, append([]string{"-listen", "127.0.0.1:0"}, args...)...)
	want, err := w.Reference()
	if err != nil {
		t.Fatal(err)
	}
	var ws []*workerProc
	for i := 0; i < w.Workers; i++ {
		ws = append(ws, startWorkerProc(t, relayWorkerSpec{URL: r.url, Typ: "dist_sync", Job: "crash", Workload: w}))
	}
	r.waitRounds(t, "crash", 10) // 5 of 16 rounds over 2 keys
	r.cmd.Process.Signal(syscall.SIGKILL)
	r.cmd.Wait() // the kernel closed its listener: the address is free
	r2 := startRelayProc(t, append([]string{"-listen", r.addr}, args...)...)
	for _, wp := range ws {
		res, err := wp.result()
		if err != nil {
			r2.mu.Lock()
			t.Fatalf("%v\nrelay log:\n%s", err, r2.logs)
		}
		if err := relaytest.Compare(res.Values, want); err != nil {
			t.Fatalf("rank %d after the relay restart: %v", res.Rank, err)
		}
	}
}

// TestRelaySIGTERMResume: without -durable and with periodic checkpoints
// out of reach, only the checkpoint written on SIGTERM persists the job; a
// relay restarted from it lets training resume with nothing lost or
// applied twice.
func TestRelaySIGTERMResume(t *testing.T) {
	integration(t)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	w := relaytest.Workload{Seed: seed, Workers: 2, Rounds: 16, Sizes: []int{33}, Pause: 40 * time.Millisecond,
		Optimizer: json.RawMessage(`{"name":"rmsprop","learning_rate":0.01}`)}
	dir := t.TempDir()
	args := []string{"-data", dir, "-durable=false", "-checkpoint-rounds", "1000000", "-checkpoint-interval", "1h", "-workers", "2", "-timeout", "10s"}
	r := startRelayProc(t, append([]string{"-listen", "127.0.0.1:0"}, args...)...)
	want, err := w.Reference()
	if err != nil {
		t.Fatal(err)
	}
	var ws []*workerProc
	for i := 0; i < w.Workers; i++ {
		ws = append(ws, startWorkerProc(t, relayWorkerSpec{URL: r.url, Typ: "dist_sync", Job: "term", Workload: w}))
	}
	r.waitRounds(t, "term", 5)
	t0 := time.Now()
	r.cmd.Process.Signal(syscall.SIGTERM)
	err = r.cmd.Wait()
	t.Logf("relay stopped %v after SIGTERM", time.Since(t0))
	if err != nil {
		r.mu.Lock()
		t.Fatalf("relay after SIGTERM: %v\n%s", err, r.logs)
	}
	r2 := startRelayProc(t, append([]string{"-listen", r.addr}, args...)...)
	t.Logf("relay restarted %v after SIGTERM", time.Since(t0))
	for _, wp := range ws {
		res, err := wp.result()
		if err != nil {
			r2.mu.Lock()
			t.Fatalf("%v\nrelay log:\n%s", err, r2.logs)
		}
		t.Logf("worker done %v after SIGTERM", time.Since(t0))
		if err := relaytest.Compare(res.Values, want); err != nil {
			t.Fatalf("rank %d after SIGTERM and restart: %v", res.Rank, err)
		}
	}
}
