//go:build !js && !wasip1

package tests

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/relay"
)

// TestBrowserDistEvents checks the page's dist events end to end, from
// kvcore's real events: round events with increasing round numbers for
// every push, a membership event when a native worker joins and another
// when it leaves (no barrier or call needed to learn of it), the connected
// event, and a wrong token rejected fast (< 2 s, code AUTH) with the relay's
// reason, where it used to retry until the create timeout.
func TestBrowserDistEvents(t *testing.T) {
	integration(t)
	rs, err := relay.NewServer(relay.Config{Tokens: map[string]string{"ev": "tok"}})
	if err != nil {
		t.Fatal(err)
	}
	var wsURL string
	joined := make(chan *kvcore.Store, 1)
	nativeErr := make(chan error, 2)
	extra := map[string]http.Handler{
		"/ws": rs,
		// The page asks for the native worker once its own rounds are done.
		"/native": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
			defer cancel()
			tr, err := relay.Dial(ctx, wsURL, relay.DialOptions{Job: "ev", Token: "tok"})
			if err == nil {
				var s *kvcore.Store
				if s, err = kvcore.Create(ctx, "dist_sync", &kvcore.Options{Transport: tr}); err == nil {
					joined <- s
				}
			}
			if err != nil {
				nativeErr <- err
				http.Error(w, err.Error(), http.StatusInternalServerError)
			}
		}),
		"/native/leave": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case s := <-joined:
				if err := s.Close(); err != nil {
					nativeErr <- err
				}
			default:
				http.Error(w, "no native worker", http.StatusConflict)
			}
		}),
	}
	srv := brServer(t, extra)
	wsURL = "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	ctx := brBrowser(t)
	const rounds = 4
	type ev struct {
		Key              any
		Round            float64
		Late, Rescaled   bool
		Rank, NumWorkers int
		Live             []int
		State, Message   string
	}
	var res struct {
		Rounds, Membership, Connection []ev
		Rank                           int
		NumWorkersWith                 int
		NumWorkersAfter                int
		Wrong                          struct {
			OK            bool
			Code, Message string
			Ms            float64
		}
	}
	brRunPage(t, ctx, fmt.Sprintf("%s/events.html?url=%s&job=ev&token=tok&rounds=%d", srv.URL, wsURL, rounds), 2*time.Minute, &res)
	select {
	case err := <-nativeErr:
		t.Fatalf("native worker: %v", err)
	default:
	}
	t.Logf("rounds %+v", res.Rounds)
	t.Logf("membership %+v", res.Membership)
	t.Logf("connection %+v; wrong token: %+v", res.Connection, res.Wrong)

	if len(res.Rounds) != rounds+1 {
		t.Errorf("%d round events, want %d (one per push)", len(res.Rounds), rounds+1)
	}
	for i, e := range res.Rounds {
		if e.Key != "w" || e.Late || e.Rescaled || e.Round != float64(i) {
			t.Errorf("round event %d: %+v, want key w round %d, not late or rescaled", i, e, i)
		}
	}
	var sawTwo, backToOne bool
	for _, e := range res.Membership {
		if e.NumWorkers == 2 && fmt.Sprint(e.Live) == "[0 1]" && e.Rank == 0 {
			sawTwo = true
		}
		if sawTwo && e.NumWorkers == 1 && fmt.Sprint(e.Live) == "[0]" {
			backToOne = true
		}
	}
	if !sawTwo || !backToOne {
		t.Errorf("membership events %+v: want live [0 1] when the native worker joined, then [0] when it left", res.Membership)
	}
	if res.NumWorkersWith != 2 || res.NumWorkersAfter != 1 {
		t.Errorf("kv.numWorkers %d with the native worker, %d after; want 2 and 1", res.NumWorkersWith, res.NumWorkersAfter)
	}
	if len(res.Connection) == 0 || res.Connection[0].State != "connected" {
		t.Errorf("connection events %+v: want 'connected' first (delivered after create resolves)", res.Connection)
	}
	w := res.Wrong
	if w.OK || w.Code != "AUTH" || !strings.Contains(w.Message, "wrong or missing token") {
		t.Errorf("create with a wrong token: %+v, want a rejection with code AUTH naming the token", w)
	}
	if w.Ms > 2000 {
		t.Errorf("the wrong token was rejected after %.0f ms, want < 2 s", w.Ms)
	}
}
