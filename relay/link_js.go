//go:build js

package relay

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall/js"
	"time"
)

// In the browser a link is the page's own WebSocket, driven through
// syscall/js. Browsers allow no custom headers, so the token travels in the
// subprotocol offer (see subprotocols). WebSocket.send never blocks (it
// queues without bound, counted in bufferedAmount), so send waits while
// more than DialOptions.MaxBuffered bytes are queued: the same
// back-pressure a native socket gives.
type link struct {
	ws    js.Value
	funcs []js.Func
	max   int64 // read limit

	mu     sync.Mutex
	queue  [][]byte
	head   int
	closed error // why the socket closed (nil while open)
	signal chan struct{}
}

// bufferPoll is how often a send waiting for the browser to drain its
// buffer looks again (WebSocket has no event for that).
const bufferPoll = time.Millisecond

func dialLink(ctx context.Context, url string, protos []string, o *DialOptions) (*link, int, error) {
	ctor := js.Global().Get("WebSocket")
	if ctor.IsUndefined() {
		return nil, 0, errors.New("relay: this JavaScript host has no WebSocket")
	}
	jsProtos := js.Global().Get("Array").New()
	for _, p := range protos {
		jsProtos.Call("push", p)
	}
	var ws js.Value
	if err := catch(func() { ws = ctor.New(url, jsProtos) }); err != nil {
		return nil, 0, err
	}
	ws.Set("binaryType", "arraybuffer")
	l := &link{ws: ws, max: o.MaxMessage, signal: make(chan struct{}, 1)}
	opened := make(chan struct{})
	var once sync.Once
	l.on("open", func(js.Value) { once.Do(func() { close(opened) }) })
	l.on("message", func(e js.Value) {
		data := e.Get("data")
		if data.Type() == js.TypeString {
			l.fail(errors.New("relay sent a text message; the protocol is binary"))
			ws.Call("close", 1003, "binary only")
			return
		}
		n := data.Get("byteLength").Int()
		if int64(n) > l.max {
			l.fail(fmt.Errorf("relay sent a message of %d bytes, above the read limit of %d", n, l.max))
			ws.Call("close", 1009, "message too big")
			return
		}
		if t := o.Traffic; t != nil {
			t.received.Add(frameBytes(n, false))
		}
		b := make([]byte, n)
		js.CopyBytesToGo(b, js.Global().Get("Uint8Array").New(data))
		l.mu.Lock()
		l.queue = append(l.queue, b)
		l.mu.Unlock()
		l.wake()
	})
	l.on("error", func(js.Value) {
		// Browsers follow an error with a close; node's WebSocket (undici,
		// node 20) does not when the connection is refused: without this a
		// first dial to a relay that is not there waited for its timeout.
		select {
		case <-opened:
		default:
			l.fail(errors.New("websocket error before the connection opened (nothing listens there, or the network refused it)"))
			once.Do(func() { close(opened) })
		}
	})
	l.on("close", func(e js.Value) {
		l.fail(fmt.Errorf("websocket closed (code %d %q)", e.Get("code").Int(), e.Get("reason").String()))
		once.Do(func() { close(opened) })
		for _, f := range l.funcs {
			f.Release()
		}
	})
	select {
	case <-opened:
	case <-ctx.Done():
		l.closeNow()
		return nil, 0, ctx.Err()
	}
	if err := l.err(); err != nil {
		return nil, 0, err
	}
	if p := ws.Get("protocol").String(); p != Subprotocol {
		l.closeNow()
		return nil, 0, fmt.Errorf("relay did not select the %s subprotocol (got %q)", Subprotocol, p)
	}
	return l, 0, nil
}

func (l *link) on(event string, fn func(js.Value)) {
	f := js.FuncOf(func(this js.Value, args []js.Value) any {
		fn(args[0])
		return nil
	})
	l.funcs = append(l.funcs, f)
	l.ws.Call("addEventListener", event, f)
}

func (l *link) wake() {
	select {
	case l.signal <- struct{}{}:
	default:
	}
}

func (l *link) fail(err error) {
	l.mu.Lock()
	if l.closed == nil {
		l.closed = err
	}
	l.mu.Unlock()
	l.wake()
}

func (l *link) err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// catch runs fn and turns a JavaScript exception into an error.
func catch(fn func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	fn()
	return nil
}

// send copies head and body into one Uint8Array and hands it to
// WebSocket.send, once the browser holds less than o.MaxBuffered unsent
// bytes.
func (l *link) send(ctx context.Context, head, body []byte, o *DialOptions) error {
	for l.ws.Get("bufferedAmount").Int() > o.MaxBuffered {
		if err := l.err(); err != nil {
			return err
		}
		t := time.NewTimer(bufferPoll)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	if err := l.err(); err != nil {
		return err
	}
	if l.ws.Get("readyState").Int() != 1 { // OPEN
		return errors.New("websocket is not open")
	}
	u8 := js.Global().Get("Uint8Array").New(len(head) + len(body))
	js.CopyBytesToJS(u8, head)
	if len(body) > 0 {
		js.CopyBytesToJS(u8.Call("subarray", len(head)), body)
	}
	if err := catch(func() { l.ws.Call("send", u8) }); err != nil {
		return err
	}
	if t := o.Traffic; t != nil {
		t.sent.Add(frameBytes(len(head)+len(body), true))
	}
	return nil
}

// recv returns the next message; a closed socket's messages are read
// first.
func (l *link) recv(ctx context.Context) ([]byte, error) {
	for {
		l.mu.Lock()
		if l.head < len(l.queue) {
			b := l.queue[l.head]
			l.queue[l.head] = nil
			l.head++
			if l.head == len(l.queue) {
				l.queue, l.head = l.queue[:0], 0
			}
			l.mu.Unlock()
			return b, nil
		}
		err := l.closed
		l.mu.Unlock()
		if err != nil {
			return nil, err
		}
		select {
		case <-l.signal:
		case <-ctx.Done():
			l.closeNow() // as the native library does with an ended read
			return nil, ctx.Err()
		}
	}
}

func (l *link) closeNow() {
	l.fail(errors.New("websocket closed"))
	catch(func() { l.ws.Call("close", 1000) })
}

func (l *link) closePolite() { l.closeNow() }
