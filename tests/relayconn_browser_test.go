//go:build !js && !wasip1

package tests

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"nhooyr.io/websocket"

	"github.com/webkv/webkv/relay"
)

// The transport conformance suite on relay.Conn's browser build (the
// page's WebSocket, GOOS=js): relay's TestConformanceJS (built with the
// webkvpeer tag) runs in node and in headless Chromium against the raw
// peer served here. The peer side of each connection is driven by the
// test in the wasm, through a control websocket.

func TestRelayConnConformanceJSNode(t *testing.T) {
	integration(t)
	bin := buildRelayJSTest(t)
	p := newJSPeer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "--experimental-websocket", "--stack-size=8192",
		filepath.Join(goroot(t), "lib", "wasm", "wasm_exec_node.js"), bin, "-test.v", "-test.run", "TestConformanceJS", "-test.timeout", "7m")
	cmd.Env = append(os.Environ(), "WEBKV_PEER_WS="+p.wsURL, "WEBKV_PEER_CTL="+p.ctlURL)
	w := &lineLog{t: t, prefix: "node: "}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Run(); err != nil {
		t.Fatalf("the suite failed in node: %v", err)
	}
}

func TestRelayConnConformanceJSChromium(t *testing.T) {
	integration(t)
	bin := buildRelayJSTest(t)
	p := newJSPeer(t)
	root := brRepoRoot(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/gotest/test.wasm", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/wasm")
		http.ServeFile(w, r, bin)
	})
	mux.HandleFunc("/gotest/wasm_exec.js", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(goroot(t), "lib", "wasm", "wasm_exec.js"))
	})
	mux.Handle("/", http.FileServer(http.Dir(filepath.Join(root, "tests/browser"))))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	q := url.Values{}
	for _, a := range []string{"-test.v", "-test.run", "TestConformanceJS"} {
		q.Add("arg", a)
	}
	q.Add("env", "WEBKV_PEER_WS="+p.wsURL)
	q.Add("env", "WEBKV_PEER_CTL="+p.ctlURL)
	ctx := brBrowser(t)
	var res struct {
		Code int `json:"code"`
	}
	brRunPage(t, ctx, srv.URL+"/gotest.html?"+q.Encode(), 10*time.Minute, &res)
	if res.Code != 0 {
		t.Fatalf("the suite failed in Chromium (exit code %d; its output is in the page log above)", res.Code)
	}
}

// goroot is the GOROOT of the go command on PATH (its wasm runners).
func goroot(t *testing.T) string {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// buildRelayJSTest compiles relay's tests for GOOS=js with the webkvpeer
// tag into a temporary file.
func buildRelayJSTest(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "relay.test.wasm")
	cmd := exec.Command("go", "test", "-c", "-tags", "webkvpeer", "-o", out, "./relay")
	cmd.Dir = brRepoRoot(t)
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GOOS=js go test -c ./relay: %v\n%s", err, msg)
	}
	return out
}

// jsPeer serves the raw peer: websocket connections at /ws (the
// transports under test) and the control protocol of
// relay/conformance_js_test.go at /ctl.
type jsPeer struct {
	wsURL, ctlURL string

	mu      sync.Mutex
	next    uint32
	conns   map[uint32]*jsPeerConn
	waiting []uint32 // accepted, not yet handed to the test
	arrived chan struct{}
}

type jsPeerConn struct {
	ws  *websocket.Conn
	rmu sync.Mutex
}

func newJSPeer(t *testing.T) *jsPeer {
	p := &jsPeer{conns: map[uint32]*jsPeerConn{}, arrived: make(chan struct{}, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{relay.Subprotocol}, InsecureSkipVerify: true})
		if err != nil {
			return
		}
		c.SetReadLimit(1 << 30)
		p.mu.Lock()
		p.next++
		p.conns[p.next] = &jsPeerConn{ws: c}
		p.waiting = append(p.waiting, p.next)
		p.mu.Unlock()
		select {
		case p.arrived <- struct{}{}:
		default:
		}
	})
	mux.HandleFunc("/ctl", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{relay.Subprotocol}, InsecureSkipVerify: true})
		if err != nil {
			return
		}
		c.SetReadLimit(1 << 30)
		p.serveCtl(r.Context(), c)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		p.reset()
	})
	base := "ws" + strings.TrimPrefix(srv.URL, "http")
	p.wsURL, p.ctlURL = base+"/ws", base+"/ctl"
	return p
}

func (p *jsPeer) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, c := range p.conns {
		c.ws.CloseNow()
		delete(p.conns, id)
	}
	p.waiting = nil
}

func (p *jsPeer) serveCtl(ctx context.Context, ctl *websocket.Conn) {
	var wmu sync.Mutex
	answer := func(id uint32, conn uint32, data []byte, err error) {
		m := binary.LittleEndian.AppendUint32(nil, id)
		if err != nil {
			m = append(m, 1)
			data = []byte(err.Error())
		} else {
			m = append(m, 0)
		}
		m = binary.LittleEndian.AppendUint32(m, conn)
		m = append(m, data...)
		wmu.Lock()
		ctl.Write(ctx, websocket.MessageBinary, m)
		wmu.Unlock()
	}
	for {
		_, m, err := ctl.Read(ctx)
		if err != nil {
			return
		}
		if len(m) < 9 {
			return
		}
		id, op, cid, data := binary.LittleEndian.Uint32(m), m[4], binary.LittleEndian.Uint32(m[5:]), m[9:]
		go func() {
			switch op {
			case 1: // accept
				for {
					p.mu.Lock()
					if len(p.waiting) > 0 {
						c := p.waiting[0]
						p.waiting = p.waiting[1:]
						p.mu.Unlock()
						answer(id, c, nil, nil)
						return
					}
					p.mu.Unlock()
					select {
					case <-p.arrived:
					case <-ctx.Done():
						return
					}
				}
			case 5: // reset
				p.reset()
				answer(id, 0, nil, nil)
			default:
				p.mu.Lock()
				c := p.conns[cid]
				p.mu.Unlock()
				if c == nil {
					answer(id, cid, nil, fmt.Errorf("no connection %d", cid))
					return
				}
				switch op {
				case 2: // send
					answer(id, cid, nil, c.ws.Write(ctx, websocket.MessageBinary, data))
				case 3: // recv
					c.rmu.Lock()
					_, b, err := c.ws.Read(ctx)
					c.rmu.Unlock()
					answer(id, cid, b, err)
				case 4: // close
					answer(id, cid, nil, c.ws.CloseNow())
				default:
					answer(id, cid, nil, errors.New("unknown op"))
				}
			}
		}()
	}
}

// lineLog writes what a command prints to the test log, line by line, as
// it comes.
type lineLog struct {
	t      *testing.T
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := strings.IndexByte(string(l.buf), '\n')
		if i < 0 {
			return len(p), nil
		}
		l.t.Log(l.prefix + string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
}
