//go:build !js && !wasip1

package relaycmd

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/webkv/webkv/relay"
)

// JobsSummary is the one-line description of the jobs command.
const JobsSummary = "list, reset or delete a relay's jobs (its /jobs admin endpoint)"

// RunJobs runs the jobs command: `jobs [flags] list|reset JOB|delete JOB`
// against a running relay's /jobs endpoint, with the admin token. It
// returns the process exit code (1: the relay refused or failed, 2: usage).
func RunJobs(args []string) int { return runJobs(args, os.Stdout, os.Stderr) }

func runJobs(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("jobs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.String("admin", "http://127.0.0.1:7070", "the relay's address, or its -admin-listen address (http://, https://, ws:// or wss://)")
	token := fs.String("admin-token", "", "the relay's admin token (also: $WEBKV_ADMIN_TOKEN; not needed on the -admin-listen address)")
	tokenFile := fs.String("admin-token-file", "", "file holding the admin token")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: jobs [flags] list | reset JOB | delete JOB\n\n"+
			"  list    the jobs in memory and the quarantined ones\n"+
			"  reset   wipe a job's keys, values, optimizer, states and runs (refused while it has workers)\n"+
			"  delete  the same, disconnecting its workers; also forgets a quarantined job\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	tok := *token
	if tok == "" {
		tok = os.Getenv("WEBKV_ADMIN_TOKEN")
	}
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintf(stderr, "webkv jobs: -admin-token-file: %v\n", err)
			return 2
		}
		tok = strings.TrimSpace(string(b))
	}
	base, err := adminBase(*admin)
	if err != nil {
		fmt.Fprintf(stderr, "webkv jobs: -admin: %v\n", err)
		return 2
	}
	rest := fs.Args()
	var method, path string
	switch {
	case len(rest) == 1 && rest[0] == "list":
		method, path = http.MethodGet, "/jobs"
	case len(rest) == 2 && rest[0] == "reset":
		method, path = http.MethodPost, "/jobs/"+url.PathEscape(rest[1])+"/reset"
	case len(rest) == 2 && rest[0] == "delete":
		method, path = http.MethodDelete, "/jobs/"+url.PathEscape(rest[1])
	default:
		fs.Usage()
		return 2
	}
	req, err := http.NewRequest(method, base+path, nil)
	if err != nil {
		fmt.Fprintf(stderr, "webkv jobs: %v\n", err)
		return 2
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "webkv jobs: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode/100 != 2 {
		fmt.Fprintf(stderr, "webkv jobs: %s %s: HTTP %d: %s\n", method, path, resp.StatusCode, strings.TrimSpace(string(body)))
		return 1
	}
	if method != http.MethodGet {
		fmt.Fprintf(stdout, "job %s %s\n", rest[1], map[string]string{"reset": "reset", "delete": "deleted"}[rest[0]])
		return 0
	}
	var jobs []relay.JobInfo
	if err := json.Unmarshal(body, &jobs); err != nil {
		fmt.Fprintf(stderr, "webkv jobs: the relay's answer is not a job list: %v\n", err)
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tMODE\tRUN\tWORKERS\tCONNECTIONS\tKEYS\tROUNDS\tLAST CHECKPOINT\tQUARANTINED")
	for _, j := range jobs {
		last := "-"
		if !j.LastCkpt.IsZero() {
			last = j.LastCkpt.UTC().Format(time.RFC3339)
		}
		mode := j.Mode
		if mode == "" {
			mode = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", j.Job, mode, j.Run, j.LiveWorkers, j.Connections, j.Keys, j.Rounds, last, j.Quarantined)
	}
	tw.Flush()
	return 0
}

// adminBase turns the -admin address into an http(s) base URL.
func adminBase(s string) (string, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	switch u.Scheme {
	case "http", "https":
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	default:
		return "", fmt.Errorf("%q: want http://, https://, ws:// or wss://", s)
	}
	if u.Host == "" {
		return "", fmt.Errorf("%q has no host", s)
	}
	return u.Scheme + "://" + u.Host, nil
}
