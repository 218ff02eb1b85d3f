//go:build js

package main

import (
	"context"
	"fmt"
	"syscall/js"
	"time"

	"github.com/webkv/webkv/kvcore"
	"github.com/webkv/webkv/relay"
)

// distOptions are create's options for dist types.
type distOptions struct {
	url, token, job        string
	workers, bigArrayBound int
	timeout                time.Duration
	waitForRelay, resume   bool
}

func distOptionsFromJS(opts js.Value) (distOptions, error) {
	var d distOptions
	var err error
	if d.url, err = optString(opts, "url"); err != nil {
		return d, err
	}
	if d.token, err = optString(opts, "token"); err != nil {
		return d, err
	}
	if d.job, err = optString(opts, "job"); err != nil {
		return d, err
	}
	w, err := optNumber(opts, "workers", 0)
	if err != nil {
		return d, err
	}
	bb, err := optNumber(opts, "bigArrayBound", 0)
	if err != nil {
		return d, err
	}
	if w < 0 || w != float64(int(w)) || bb < 0 || bb != float64(int(bb)) {
		return d, badArg("webkv: options workers (%v) and bigArrayBound (%v) must be non-negative integers", w, bb)
	}
	d.workers, d.bigArrayBound = int(w), int(bb)
	if d.waitForRelay, err = optBool(opts, "waitForRelay", false); err != nil {
		return d, err
	}
	if d.resume, err = optBool(opts, "resume", false); err != nil {
		return d, err
	}
	ms, err := optNumber(opts, "timeoutMs", 30000)
	if err != nil {
		return d, err
	}
	d.timeout = time.Duration(ms * float64(time.Millisecond))
	return d, nil
}

type relayLink struct{ c *relay.Conn }

func (l relayLink) close() error { return l.c.Close() }

// dialDist connects a dist store to its relay. The store's kvcore events
// (rounds closed, membership, connection state) become the page's
// "round", "membership" and "connection" events (see onEvent).
func dialDist(ctx context.Context, typ string, o distOptions, st *jsStore) (distLink, *kvcore.Options, context.Context, error) {
	if o.url == "" {
		return nil, nil, nil, badArg("webkv: create %q: option url (the relay, e.g. \"ws://host:8080/ws\") is required", typ)
	}
	if o.job == "" {
		o.job = "default"
	}
	dctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	c, err := relay.Dial(dctx, o.url, relay.DialOptions{
		Job: o.job, Token: o.token, Workers: o.workers, BigArrayBound: o.bigArrayBound,
		WaitForRelay: o.waitForRelay, Resume: o.resume, Traffic: &st.traffic,
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("webkv: create %q: %w", typ, err)
	}
	// The store's set-up (joining the job) gets the same bound, counted
	// again from here; it must not be dctx, which ends when Dial returns.
	return relayLink{c}, &kvcore.Options{Transport: c, Events: st.onEvent}, withTimeoutNoCancel(ctx, o.timeout), nil
}

// onEvent turns a kvcore event into a page event. It runs on kvcore's event
// goroutine (never the engine's), so a slow listener only makes events
// drop (counted in the next event's "dropped").
func (st *jsStore) onEvent(e kvcore.Event) {
	d := map[string]any{}
	if e.Dropped > 0 {
		d["dropped"] = e.Dropped
	}
	switch e.Kind {
	case kvcore.EventRound:
		d["key"] = keyToJS(e.Key)
		d["round"] = e.Round
		d["late"] = e.Late
		d["rescaled"] = e.Rescaled
		st.emit("round", d)
	case kvcore.EventMembership:
		st.mu.Lock()
		st.rank, st.numWorkers = e.Rank, e.NumWorkers
		st.mu.Unlock()
		live := make([]any, len(e.Live))
		for i, r := range e.Live {
			live[i] = r
		}
		d["rank"], d["numWorkers"], d["live"] = e.Rank, e.NumWorkers, live
		st.emit("membership", d)
	case kvcore.EventConnection:
		d["state"] = e.Conn.String()
		d["shard"] = e.Shard
		if e.Conn == kvcore.ConnReconnecting {
			d["attempt"] = e.Attempt
		}
		if e.Err != nil {
			d["message"] = e.Err.Error()
		}
		st.emit("connection", d)
		if debug {
			js.Global().Get("console").Call("log", fmt.Sprintf("webkv: relay shard %d %v", e.Shard, e.Conn), errText(e.Err))
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// keyToJS is a key as the page wrote it: a number or a string.
func keyToJS(k kvcore.Key) any {
	if k.IsString() {
		return k.Str()
	}
	return k.Int()
}

// withTimeoutNoCancel is context.WithTimeout for a context used only
// through kvcore.Create: its timer releases it.
func withTimeoutNoCancel(ctx context.Context, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(ctx, d)
	time.AfterFunc(d, cancel)
	return c
}
