//go:build !js && !wasip1

package relaycmd

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/webkv/webkv/relay"
)

// Issue 11, problem 10: `webkv version` says which build runs.
func TestVersion(t *testing.T) {
	v := versionOf(&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/webkv/webkv", Version: "v0.3.0"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}, {Key: "CGO_ENABLED", Value: "0"}}})
	for _, want := range []string{"github.com/webkv/webkv v0.3.0", "go1.26.8", "rev 0123456789ab+modified", "cgo=0"} {
		if !strings.Contains(v, want) {
			t.Errorf("version %q lacks %q", v, want)
		}
	}
	if v := Version(); !strings.Contains(v, "go1.") {
		t.Errorf("Version() = %q", v)
	}
	if code := RunVersion([]string{"x"}); code != 2 {
		t.Errorf("version x: exit code %d", code)
	}
}

// Issue 11, problem 10: the startup line counted tokens as jobs ("jobs":2
// with an empty data dir).
func TestReadyLineCountsJobs(t *testing.T) {
	cfg := relay.Config{Tokens: map[string]string{"a": "x", "b": "y"}, WorkerTokens: map[string]map[string]string{"b": {"p": "z"}, "c": {"q": "w"}},
		DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)}
	srv, err := relay.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(t.Context())
	var b bytes.Buffer
	logReady(slog.New(slog.NewJSONHandler(&b, nil)), "ws://x", srv, &cfg)
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if m["jobs"] != float64(0) || m["token_jobs"] != float64(3) || m["version"] == nil {
		t.Fatalf("startup line %s: want jobs 0 (an empty data dir), token_jobs 3", b.String())
	}
}
