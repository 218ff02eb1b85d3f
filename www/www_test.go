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
