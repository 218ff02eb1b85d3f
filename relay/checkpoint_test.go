//go:build !js && !wasip1

package relay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/relay"
	"github.com/webkv/webkv/relay/relaytest"
	bolt "go.etcd.io/bbolt"
)

// ckptFixture is a data dir with two trained jobs, "good" and "bad", whose
// snapshots span several pages each.
type ckptFixture struct {
	dir  string
	want [][]float32 // job good's trained values
	file []byte
}

func newCkptFixture(t *testing.T) *ckptFixture {
	t.Helper()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	dir := t.TempDir()
	s, u := start(t, relay.Config{DataDir: dir})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w := &relaytest.Workload{Seed: seed, Workers: 2, Rounds: 2, Sizes: []int{5000, 7}, Optimizer: json.RawMessage(`{"name":"adam","learning_rate":0.01}`)}
	want, err := w.Reference()
	if err != nil {
		t.Fatal(err)
	}
	runWorkers(t, ctx, u, "dist_sync", "good", w)
	runWorkers(t, ctx, u, "dist_sync", "bad", w)
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "relay.db"))
	if err != nil {
		t.Fatal(err)
	}
	return &ckptFixture{dir: dir, want: want, file: b}
}

// with writes a damaged copy of the file (edit changes it) into a new dir.
func (f *ckptFixture) with(t *testing.T, edit func(b []byte) []byte) string {
	t.Helper()
	dir := t.TempDir()
	b := edit(append([]byte(nil), f.file...))
	if err := os.WriteFile(filepath.Join(dir, "relay.db"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// snapshotOffset is where job's snapshot value starts in the file.
func (f *ckptFixture) snapshotOffset(t *testing.T, job string) int {
	t.Helper()
	db, err := bolt.Open(filepath.Join(f.dir, "relay.db"), 0o400, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var snap []byte
	db.View(func(tx *bolt.Tx) error {
		snap = append(snap, tx.Bucket([]byte("jobs")).Bucket([]byte(job)).Get([]byte("snapshot"))...)
		return nil
	})
	i := bytes.Index(f.file, snap[:512])
	if i < 0 || len(snap) < 3*4096 {
		t.Fatalf("snapshot of %s (%d bytes) not found in the file", job, len(snap))
	}
	return i
}

// TestCheckpointFileCorrupt: a damaged relay.db as a whole is a clear
// error naming the file, never a Go fatal error, a panic, or a silent
// fresh start (issue 8: a truncated file crashed inside bbolt, a 0-byte one
// started as an empty relay).
func TestCheckpointFileCorrupt(t *testing.T) {
	f := newCkptFixture(t)
	cases := []struct {
		name, want string
		edit       func(b []byte) []byte
	}{
		{"empty", "empty (0 bytes)", func(b []byte) []byte { return nil }},
		{"truncated", "truncated", func(b []byte) []byte { return b[:len(b)/2/4096*4096] }},
		{"one page", "", func(b []byte) []byte { return b[:4096] }},
		{"not a page multiple", "not a multiple of its page size", func(b []byte) []byte { return append(b, make([]byte, 100)...) }},
		{"garbage", "", func(b []byte) []byte {
			r := rand.New(rand.NewPCG(1, 2))
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			return b
		}},
		{"meta pages zeroed", "", func(b []byte) []byte { clear(b[:2*4096]); return b }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := f.with(t, tc.edit)
			s, err := relay.NewServer(relay.Config{DataDir: dir, Logger: quiet()})
			if err == nil {
				s.Shutdown(context.Background())
				t.Fatal("a corrupt checkpoint file was accepted")
			}
			if !errors.Is(err, relay.ErrCorrupt) || !strings.Contains(err.Error(), filepath.Join(dir, "relay.db")) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q: want relay.ErrCorrupt naming the file and %q", err, tc.want)
			}
			t.Logf("%v", err)
		})
	}
}

// TestCheckpointJobQuarantine: a job whose checkpoint is damaged is
// quarantined (logged, listed in /status, its connections refused) while
// the healthy job starts with its trained values; ClearQuarantine frees
// the id.
func TestCheckpointJobQuarantine(t *testing.T) {
	f := newCkptFixture(t)
	off := f.snapshotOffset(t, "bad")
	dir := f.with(t, func(b []byte) []byte {
		p := (off/4096 + 2) * 4096 // a page inside bad's snapshot
		clear(b[p : p+4096])
		return b
	})
	s, u := start(t, relay.Config{DataDir: dir, AdminToken: "adm"})
	st := s.Status()
	if len(st.Jobs) != 1 || st.Jobs[0].Job != "good" || len(st.Quarantined) != 1 || st.Quarantined[0].Job != "bad" {
		t.Fatalf("status: jobs %+v, quarantined %+v; want good running and bad quarantined", st.Jobs, st.Quarantined)
	}
	if r := st.Quarantined[0].Reason; !strings.Contains(r, filepath.Join(dir, "relay.db")) || !strings.Contains(r, "checksum") {
		t.Fatalf("quarantine reason %q: want the file and the damage", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := relay.Dial(ctx, u, relay.DialOptions{Job: "bad", Logger: quiet(), GiveUp: time.Second}); err == nil {
		t.Fatal("a connection to the quarantined job was accepted")
	}
	resp, err := http.Get("http" + strings.TrimPrefix(u, "ws") + "/ws?job=bad")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("upgrade to the quarantined job: HTTP %d, want 503", resp.StatusCode)
		}
	}
	checkValues(t, ctx, u, "good", f.want)
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// The quarantine survives a restart, until cleared.
	s2, err := relay.NewServer(relay.Config{DataDir: dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if st := s2.Status(); len(st.Quarantined) != 1 || len(st.Jobs) != 1 {
		t.Fatalf("after a restart: %+v", st)
	}
	s2.Shutdown(ctx)
	s3, u3 := start(t, relay.Config{DataDir: dir, ClearQuarantine: true})
	if st := s3.Status(); len(st.Quarantined) != 0 || len(st.Jobs) != 1 {
		t.Fatalf("after clearing the quarantine: %+v", st)
	}
	c, err := relay.Dial(ctx, u3, relay.DialOptions{Job: "bad", Logger: quiet()})
	if err != nil {
		t.Fatalf("the cleared id: %v", err)
	}
	c.Close()
	checkValues(t, ctx, u3, "good", f.want)
}

// checkValues has a new worker of job read its keys and compares them.
func checkValues(t *testing.T, ctx context.Context, u, job string, want [][]float32) {
	t.Helper()
	s, err := relay.Create(ctx, "dist_sync", u, relay.DialOptions{Job: job, Resume: true, Logger: quiet()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got [][]float32
	for k, w := range want {
		a, _ := kvcore.NewArray(kvcore.CPU(0), len(w))
		if err := s.Init(ctx, kvcore.IntKey(k), a); err != nil {
			t.Fatal(err)
		}
		if err := s.Pull(kvcore.IntKey(k), a); err != nil {
			t.Fatal(err)
		}
		v, err := a.ToSlice(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	if err := relaytest.Compare(got, want); err != nil {
		t.Fatalf("job %s after the restart: %v", job, err)
	}
}

// TestCheckpointEveryPageDamaged zeroes each page of the file in turn and
// truncates it at every page boundary: the relay always either refuses to
// start with relay.ErrCorrupt or starts; when it starts, job good is
// either restored with its exact values or quarantined, and nothing
// panics or faults (bbolt would crash the process on several of these).
func TestCheckpointEveryPageDamaged(t *testing.T) {
	if testing.Short() {
		t.Skip("one relay start per page")
	}
	f := newCkptFixture(t)
	pages := len(f.file) / 4096
	outcome := map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	try := func(name string, edit func(b []byte) []byte) {
		dir := f.with(t, edit)
		s, err := relay.NewServer(relay.Config{DataDir: dir, Logger: quiet()})
		if err != nil {
			if !errors.Is(err, relay.ErrCorrupt) || !strings.Contains(err.Error(), dir) {
				t.Fatalf("%s: %v: want relay.ErrCorrupt naming the file", name, err)
			}
			outcome["refused"]++
			return
		}
		defer s.Shutdown(ctx)
		st := s.Status()
		good := false
		for _, j := range st.Jobs {
			good = good || j.Job == "good"
		}
		switch {
		case good && len(st.Quarantined) == 0:
			outcome["started whole"]++
		case good:
			outcome["started, bad quarantined"]++
		default:
			outcome["started, good quarantined"]++
		}
		if good && len(st.Jobs) > 0 {
			u, err := s.Listen("127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go s.Serve()
			checkValues(t, ctx, u, "good", f.want)
		}
	}
	for p := 2; p < pages; p++ {
		try("page "+strconv.Itoa(p)+" zeroed", func(b []byte) []byte { clear(b[p*4096 : (p+1)*4096]); return b })
	}
	for p := 0; p < pages; p++ {
		try("truncated to "+strconv.Itoa(p)+" pages", func(b []byte) []byte { return b[:p*4096] })
	}
	t.Logf("%d pages; outcomes %v", pages, outcome)
	if outcome["started, bad quarantined"] == 0 {
		t.Fatal("no damaged page left the healthy job running with the damaged one quarantined")
	}
}
