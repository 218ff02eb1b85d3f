//go:build !js && !wasip1

package tests

import (
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestE2EFederatedTab: a tab follows the job's federated mode (issue 14).
// The demo runs 1 native worker and waits for 1 tab; the job has 5 local
// steps per round and the mean aggregate. The tab trains its local steps
// in app.js (inner SGD on the page, the outer Nesterov optimizer on the
// relay), so it processes 5 batches a round, and it ends with the same
// model as the native worker.
func TestE2EFederatedTab(t *testing.T) {
	integration(t)
	const rounds, local = 12, 5
	js := brBuild(t)
	demo, url := startDemo(t, "-workers", "1", "-tabs", "1", "-listen", "127.0.0.1:0", "-js", js,
		"-steps", strconv.Itoa(rounds), "-eval-every", strconv.Itoa(rounds), "-local-steps", strconv.Itoa(local),
		"-aggregate", "mean", "-linger", "3m")
	tab := brBrowser(t)
	if err := brNavigate(tab, url, chromedp.EmulateViewport(1280, 1000)); err != nil {
		t.Fatal(err)
	}
	fin := waitDemo(t, tab, "tab", 3*time.Minute, "end of training", func(d demoTab) bool { return d.State == "done" })
	t.Logf("tab: %d rounds, %d samples, test accuracy %.2f%%, backend %q", fin.Round, fin.Samples, 100*fin.TestAcc, fin.Backend)
	if fin.Round != rounds || fin.Samples != rounds*local*64 {
		t.Errorf("tab: %d rounds and %d samples, want %d rounds of %d local steps of 64", fin.Round, fin.Samples, rounds, local)
	}
	var line string
	select {
	case line = <-demo.final:
	case err := <-demo.exit:
		t.Fatalf("webkv demo exited (%v) without a final accuracy", err)
	case <-time.After(time.Minute):
		t.Fatal("the native worker did not finish within a minute of the tab")
	}
	m := finalRE.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("cannot parse the demo's final line %q", line)
	}
	acc, _ := strconv.ParseFloat(m[1], 64)
	t.Logf("demo: %s", line)
	// 12 rounds of 5 local steps on 2 workers: about 90%; per-step
	// training of 12 rounds stays near 75%.
	if acc < 85 {
		t.Errorf("native worker: %.2f%%, want >= 85%%", acc)
	}
	if d := math.Abs(acc - 100*fin.TestAcc); d > 0.25 {
		t.Errorf("the tab ends at %.2f%% and the native worker at %.2f%%: not the same model", 100*fin.TestAcc, acc)
	}
}
