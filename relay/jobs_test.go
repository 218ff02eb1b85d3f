//go:build !js && !wasip1

package relay

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore"
)

// trainOnce joins job, inits key 1 with init (resume as asked), pushes
// push (without an optimizer the value becomes the push) unless nil, and
// returns the pulled value and the store (open).
func trainOnce(t *testing.T, ctx context.Context, u, job string, resume bool, init, push []float32) ([]float32, *kvcore.Store, error) {
	t.Helper()
	s, err := Create(ctx, "dist_sync", u, DialOptions{Job: job, Resume: resume, Logger: quietLogger()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := kvcore.FromSlice(kvcore.CPU(0), init, len(init))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Init(ctx, kvcore.IntKey(1), a); err != nil {
		return nil, s, err
	}
	if push != nil {
		g, _ := kvcore.FromSlice(kvcore.CPU(0), push, len(push))
		if err := s.Push(kvcore.IntKey(1), g); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Pull(kvcore.IntKey(1), a); err != nil {
		t.Fatal(err)
	}
	out := make([]float32, len(init))
	if err := a.CopyTo(ctx, out); err != nil {
		return nil, s, err
	}
	return out, s, nil
}

func listJobs(t *testing.T, base string) map[string]JobInfo {
	t.Helper()
	resp, err := http.Get(base + "/jobs")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var js []JobInfo
	if err := json.NewDecoder(resp.Body).Decode(&js); err != nil {
		t.Fatal(err)
	}
	m := map[string]JobInfo{}
	for _, j := range js {
		m[j.Job] = j
	}
	return m
}

func adminDo(t *testing.T, method, url string) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Issue 11, problem 4: reusing a job id on a relay with a data dir
// silently resumed the old run (Init(zeros) returned nil, training went on
// from the old weights). Now that Init fails with kvcore.ErrEarlierRun;
// Resume continues the run on purpose; /jobs lists, resets and deletes.
func TestJobsAsResources(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: dir, Durable: true, OpenAdmin: true}
	s1, u := startServer(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got, st, err := trainOnce(t, ctx, u, "m", false, []float32{0, 0}, []float32{5, 7})
	if err != nil || got[0] != 5 || got[1] != 7 {
		t.Fatalf("first run: %v %v", got, err)
	}
	st.Close()
	if err := s1.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// The relay restarts on its data; a new run reuses the job id.
	_, u = startServer(t, cfg)
	base := strings.Replace(u, "ws://", "http://", 1)
	if j, ok := listJobs(t, base)["m"]; !ok || j.Keys != 1 {
		t.Fatalf("GET /jobs after restart: %+v", listJobs(t, base))
	}
	_, st, err = trainOnce(t, ctx, u, "m", false, []float32{0, 0}, nil)
	if !errors.Is(err, kvcore.ErrEarlierRun) || !strings.Contains(err.Error(), "resume") {
		t.Fatalf("init of a key from an earlier run: %v; want kvcore.ErrEarlierRun", err)
	}
	t.Logf("%v", err)
	st.Close()
	// Resume continues it.
	got, st, err = trainOnce(t, ctx, u, "m", true, []float32{0, 0}, nil)
	if err != nil || got[0] != 5 || got[1] != 7 {
		t.Fatalf("resumed run: %v %v, want [5 7]", got, err)
	}
	// Reset refuses a job in use; delete disconnects its workers.
	if code := adminDo(t, http.MethodPost, base+"/jobs/m/reset"); code != http.StatusConflict {
		t.Fatalf("reset of a job in use: HTTP %d, want 409", code)
	}
	if code := adminDo(t, http.MethodDelete, base+"/jobs/m"); code != http.StatusNoContent {
		t.Fatalf("delete: HTTP %d", code)
	}
	err = st.Pull(kvcore.IntKey(1), mustArray(t, 2))
	if err == nil {
		err = st.WaitAll(ctx)
	}
	if err == nil || !strings.Contains(err.Error(), "deleted by the relay's operator") {
		t.Fatalf("a worker of a deleted job: %v", err)
	}
	st.Close()
	if _, ok := listJobs(t, base)["m"]; ok {
		t.Fatal("deleted job still listed")
	}
	// A new run starts from nothing; reset wipes it once its worker left.
	got, st, err = trainOnce(t, ctx, u, "m", false, []float32{1, 2}, nil)
	if err != nil || got[0] != 1 || got[1] != 2 {
		t.Fatalf("after delete: %v %v, want the new init", got, err)
	}
	st.Close()
	if code := adminDo(t, http.MethodPost, base+"/jobs/m/reset"); code != http.StatusNoContent {
		t.Fatalf("reset: HTTP %d", code)
	}
	got, st, err = trainOnce(t, ctx, u, "m", false, []float32{3, 4}, nil)
	if err != nil || got[0] != 3 || got[1] != 4 {
		t.Fatalf("after reset: %v %v, want the new init", got, err)
	}
	st.Close()
	if code := adminDo(t, http.MethodDelete, base+"/jobs/nosuch"); code != http.StatusNotFound {
		t.Fatalf("delete of no job: HTTP %d, want 404", code)
	}
}

// Without the admin credential /jobs is refused.
func TestJobsNeedAdmin(t *testing.T) {
	_, u := startServer(t, Config{AdminToken: "adm"})
	base := strings.Replace(u, "ws://", "http://", 1)
	if code := adminDo(t, http.MethodGet, base+"/jobs"); code != http.StatusUnauthorized {
		t.Fatalf("GET /jobs without the admin token: HTTP %d", code)
	}
	if code := adminDo(t, http.MethodDelete, base+"/jobs/x"); code != http.StatusUnauthorized {
		t.Fatalf("DELETE /jobs/x without the admin token: HTTP %d", code)
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/jobs", nil)
	req.Header.Set("Authorization", "Bearer adm")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /jobs with the admin token: %v %v", resp, err)
	}
	resp.Body.Close()
}

func mustArray(t *testing.T, n int) *kvcore.Array {
	a, err := kvcore.FromSlice(kvcore.CPU(0), make([]float32, n), n)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
