package www

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func post(t *testing.T, url, body string) int {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestHandlerServesApp(t *testing.T) {
	cfg := DefaultJob()
	cfg.Token = "s3cret"
	rt := fstest.MapFS{"webkv.js": {Data: []byte("export const x = 1;")}}
	srv := httptest.NewServer(Handler(Config{Job: cfg, Runtime: rt}))
	defer srv.Close()
	for path, want := range map[string]string{
		"/":                "<canvas id=\"chart\"",
		"/app.js":          "webkv.create(cfg.type",
		"/gpu.js":          "createPipelineLayout",
		"/mlp/matmul.wgsl": "@workgroup_size(8, 8)",
		"/mlp/colsum.wgsl": "workgroupBarrier",
		"/webkv/webkv.js":  "export const x",
		"/api/config":      `"job":"mnist"`,
	} {
		code, body := get(t, srv.URL+path)
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d, body lacks %q", path, code, want)
		}
	}
	if _, body := get(t, srv.URL+"/api/config"); strings.Contains(body, "s3cret") {
		t.Error("/api/config leaks the token without ShareToken")
	}
	if code, _ := get(t, srv.URL+"/data/shard?n=0&i=0"); code != http.StatusBadRequest {
		t.Errorf("bad shard request: %d, want 400", code)
	}
	// Reports need the job token when one is set.
	if code := post(t, srv.URL+"/api/report", `{"id":"a","state":"training","round":1}`); code != http.StatusForbidden {
		t.Errorf("report without token: %d, want 403", code)
	}
	if code := post(t, srv.URL+"/api/report", `{"id":"a","kind":"native","state":"training","round":1,"loss":2.1,"token":"s3cret"}`); code != http.StatusNoContent {
		t.Errorf("report: %d, want 204", code)
	}
	if code := post(t, srv.URL+"/api/report", `{"id":"","token":"s3cret"}`); code != http.StatusBadRequest {
		t.Errorf("report without id: %d, want 400", code)
	}
	if code := post(t, srv.URL+"/api/report", `{not json`); code != http.StatusBadRequest {
		t.Errorf("malformed report: %d, want 400", code)
	}
	post(t, srv.URL+"/api/report", `{"id":"a","kind":"native","state":"training","round":2,"loss":1.5,"test_acc":0.8,"token":"s3cret"}`)
	post(t, srv.URL+"/api/report", `{"id":"b","kind":"browser","state":"training","round":1,"token":"s3cret"}`)
	post(t, srv.URL+"/api/leave", `{"id":"b","token":"s3cret"}`)
	_, body := get(t, srv.URL+"/api/peers")
	var st struct {
		Peers []PeerStatus `json:"peers"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Peers) != 2 || st.Peers[0].ID != "a" || st.Peers[1].ID != "b" {
		t.Fatalf("peers: %+v", st.Peers)
	}
	if a := st.Peers[0]; a.Gone || len(a.History) != 2 || a.History[0].TestAcc != 0 || a.History[1].TestAcc != 0.8 || a.Token != "" {
		t.Errorf("peer a: %+v", a)
	}
	if b := st.Peers[1]; !b.Gone || b.State != "left" {
		t.Errorf("peer b after leave: gone %v state %q", b.Gone, b.State)
	}
}

func TestHandlerWithoutRuntime(t *testing.T) {
	cfg := DefaultJob()
	cfg.Token = "tok"
	srv := httptest.NewServer(Handler(Config{Job: cfg, ShareToken: true}))
	defer srv.Close()
	if code, body := get(t, srv.URL+"/webkv/webkv.js"); code != 404 || !strings.Contains(body, "build.sh") {
		t.Errorf("runtime missing: %d %q", code, body)
	}
	if _, body := get(t, srv.URL+"/api/config"); !strings.Contains(body, `"token":"tok"`) {
		t.Errorf("ShareToken: config %s", body)
	}
}

// TestBoardPlotsJobRounds: a peer's history is in the job's rounds, so a
// tab that joined a running job is drawn where the job was, not at its
// own round 1: a report's JobRound wins, and without one the board asks
// the job (BoardOptions.Job). /api/peers serves the job's state.
func TestBoardPlotsJobRounds(t *testing.T) {
	jobRound := 500
	b := NewBoard(&BoardOptions{Job: func() JobState {
		return JobState{Job: "mnist", Round: jobRound, Rounds: 3000, LiveWorkers: 2}
	}})
	srv := httptest.NewServer(Handler(Config{Job: DefaultJob(), Board: b}))
	defer srv.Close()
	// A tab that joined at the job's round 500 reports its own rounds 1
	// and 2 with the job rounds it saw; a native worker reports none.
	post(t, srv.URL+"/api/report", `{"id":"tab-1","kind":"browser","state":"training","round":1,"job_round":501,"loss":2}`)
	post(t, srv.URL+"/api/report", `{"id":"tab-1","kind":"browser","state":"training","round":2,"job_round":502,"loss":1.9}`)
	post(t, srv.URL+"/api/report", `{"id":"native-0","kind":"native","state":"training","round":500,"loss":0.1}`)
	jobRound = 501
	post(t, srv.URL+"/api/report", `{"id":"native-0","kind":"native","state":"training","round":501,"loss":0.1}`)
	_, body := get(t, srv.URL+"/api/peers")
	var st struct {
		Job   JobState     `json:"job"`
		Peers []PeerStatus `json:"peers"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if st.Job.Round != 501 || st.Job.Rounds != 3000 || st.Job.LiveWorkers != 2 {
		t.Errorf("job %+v", st.Job)
	}
	rounds := map[string][]int{}
	for _, p := range st.Peers {
		for _, pt := range p.History {
			rounds[p.ID] = append(rounds[p.ID], pt.Round)
		}
	}
	if got := rounds["tab-1"]; len(got) != 2 || got[0] != 501 || got[1] != 502 {
		t.Errorf("tab-1's history in rounds %v, want the job's [501 502]", got)
	}
	if got := rounds["native-0"]; len(got) != 2 || got[0] != 500 || got[1] != 501 {
		t.Errorf("native-0's history in rounds %v, want the job's [500 501]", got)
	}
	// Without a job (a page served without a relay) the peer's own rounds.
	b2 := NewBoard(nil)
	if err := b2.Report(Report{ID: "a", State: "training", Round: 7}); err != nil {
		t.Fatal(err)
	}
	if h := b2.Peers()[0].History; len(h) != 1 || h[0].Round != 7 {
		t.Errorf("history without a job: %+v", h)
	}
}

// TestBoardHistoryKeepsItsSpan: a long run's history is thinned, not cut:
// the chart still starts at the first round and keeps every evaluation.
func TestBoardHistoryKeepsItsSpan(t *testing.T) {
	b := NewBoard(nil)
	for r := 1; r <= 3*maxHistory; r++ {
		rep := Report{ID: "n", State: "training", Round: r, Loss: 1}
		if r%250 == 0 {
			rep.TestAcc = float64(r) / (3 * maxHistory) // a new value at each evaluation
		}
		if err := b.Report(rep); err != nil {
			t.Fatal(err)
		}
	}
	h := b.Peers()[0].History
	if len(h) > maxHistory || h[0].Round != 1 || h[len(h)-1].Round != 3*maxHistory {
		t.Fatalf("history of %d points from round %d to %d, want <= %d from 1 to %d", len(h), h[0].Round, h[len(h)-1].Round, maxHistory, 3*maxHistory)
	}
	evals := 0
	for _, p := range h {
		if p.TestAcc != 0 {
			evals++
		}
	}
	if evals != 3*maxHistory/250 {
		t.Errorf("%d evaluations kept, want %d", evals, 3*maxHistory/250)
	}
}
