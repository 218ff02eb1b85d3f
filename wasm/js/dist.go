//go:build js

package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
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
	ms, err := optNumber(opts, "timeoutMs", 30000)
	if err != nil {
		return d, err
	}
	d.timeout = time.Duration(ms * float64(time.Millisecond))
	return d, nil
}

type relayLink struct{ c *relay.Conn }

func (l relayLink) close() error { return l.c.Close() }

// dialDist connects a dist store to its relay. The relay client's log
// records (connection lost, re-established, gave up) become the store's
// "connection" events.
func dialDist(ctx context.Context, typ string, o distOptions, st *jsStore) (distLink, []kvcore.Option, error) {
	if o.url == "" {
		return nil, nil, badArg("webkv: create %q: option url (the relay, e.g. \"ws://host:8080/ws\") is required", typ)
	}
	if o.job == "" {
		o.job = "default"
	}
	dctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	c, err := relay.Dial(dctx, o.url, relay.DialOptions{
		Job: o.job, Token: o.token, Workers: o.workers, BigArrayBound: o.bigArrayBound,
		Logger: slog.New(&eventHandler{st: st}),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("webkv: create %q: %w", typ, err)
	}
	st.emit("connection", map[string]any{"state": "connected", "url": o.url, "job": o.job})
	// The store's set-up (joining the job) gets the same bound, counted
	// again from here; it must not be dctx, which ends when Dial returns.
	return relayLink{c}, []kvcore.Option{kvcore.WithTransport(c), kvcore.WithContext(withTimeoutNoCancel(ctx, o.timeout))}, nil
}

// eventHandler is a slog.Handler that turns the relay client's records into
// "connection" events (state: "lost", "reconnected", "failed" or "info")
// and also prints them on the console.
type eventHandler struct {
	st    *jsStore
	attrs []slog.Attr
}

func (h *eventHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *eventHandler) Handle(_ context.Context, r slog.Record) error {
	d := map[string]any{"message": r.Message, "level": r.Level.String()}
	add := func(a slog.Attr) bool {
		d[a.Key] = a.Value.String()
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	m := strings.ToLower(r.Message)
	switch {
	case strings.Contains(m, "lost"):
		d["state"] = "lost"
	case strings.Contains(m, "re-established"):
		d["state"] = "reconnected"
	case strings.Contains(m, "gave up"), r.Level >= slog.LevelError:
		d["state"] = "failed"
	default:
		d["state"] = "info"
	}
	h.st.emit("connection", d)
	js.Global().Get("console").Call("log", "webkv relay: "+r.Message)
	return nil
}

func (h *eventHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &eventHandler{st: h.st, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *eventHandler) WithGroup(string) slog.Handler { return h }

// withTimeoutNoCancel is context.WithTimeout for a context used only
// through kvcore.Create: its timer releases it.
func withTimeoutNoCancel(ctx context.Context, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(ctx, d)
	time.AfterFunc(d, cancel)
	return c
}
