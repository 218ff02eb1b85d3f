//go:build !js && !wasip1

package relaycmd

import (
	"context"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/relay"
)

// Issue 11, problem 4: there was no way to list, reset or delete a job.
func TestJobsCommand(t *testing.T) {
	srv, err := relay.NewServer(relay.Config{AdminToken: "adm", Tokens: map[string]string{"m": "t"}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	u, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	defer srv.Shutdown(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := relay.Create(ctx, "dist_sync", u, relay.DialOptions{Job: "m", Token: "t", Logger: slog.New(slog.DiscardHandler)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := kvcore.FromSlice(kvcore.CPU(0), []float32{1, 2}, 2)
	if err := s.Init(ctx, kvcore.IntKey(1), v); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (int, string, string) {
		var out, errOut strings.Builder
		code := runJobs(append([]string{"-admin", u, "-admin-token", "adm"}, args...), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	code, out, _ := run("list")
	if code != 0 || !strings.Contains(out, "JOB") || !regexpLine(out, `^m\s+sync\s+1\s+1\s+1\s+1\s+0`) {
		t.Fatalf("list: %d\n%s", code, out)
	}
	if code, _, errOut := run("reset", "m"); code != 1 || !strings.Contains(errOut, "HTTP 409") {
		t.Fatalf("reset of a job in use: %d %s", code, errOut)
	}
	s.Close()
	if code, out, errOut := run("reset", "m"); code != 0 || out != "job m reset\n" {
		t.Fatalf("reset: %d %q %s", code, out, errOut)
	}
	if code, _, errOut := run("delete", "m"); code != 1 || !strings.Contains(errOut, "HTTP 404") {
		t.Fatalf("delete of a wiped job: %d %s", code, errOut)
	}
	var errOut strings.Builder
	if code := runJobs([]string{"-admin", u, "list"}, &strings.Builder{}, &errOut); code != 1 || !strings.Contains(errOut.String(), "HTTP 401") {
		t.Fatalf("list without the admin token: %d %s", code, errOut.String())
	}
	if code, _, _ := run("frobnicate"); code != 2 {
		t.Fatalf("unknown verb: exit code %d", code)
	}
}

func regexpLine(s, re string) bool {
	for _, l := range strings.Split(s, "\n") {
		if ok, _ := regexp.MatchString(re, l); ok {
			return true
		}
	}
	return false
}
