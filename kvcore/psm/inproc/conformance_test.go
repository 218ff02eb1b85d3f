package inproc

import (
	"context"
	"testing"

	"github.com/webkv/webkv/kvcore/psm"
	"github.com/webkv/webkv/kvcore/transport"
	"github.com/webkv/webkv/kvcore/transport/transporttest"
)

// The transport conformance suite on the connections Server.Connect hands
// out, with the test as their raw peer instead of the jobs.
func TestConformance(t *testing.T) {
	transporttest.Run(t, transporttest.Harness{
		New: func(t *testing.T) (transport.Transport, transporttest.Peer) {
			s := newServer(psm.Config{}, false)
			t.Cleanup(s.Close)
			return s.Connect("conformance", 0), peer{s}
		},
		Reconnects:  true,
		MaxBuffered: transport.PipeCapacity + 1<<20,
	})
}

type peer struct{ s *Server }

func (p peer) Accept(ctx context.Context) (transporttest.Conn, error) {
	t, err := p.s.l.Accept(ctx)
	if err != nil {
		return nil, err
	}
	return raw{t}, nil
}

type raw struct{ t transport.Transport }

func (r raw) Send(ctx context.Context, msg []byte) error {
	return r.t.Send(ctx, 0, transport.FirstEpoch, msg, nil)
}

func (r raw) Recv(ctx context.Context) ([]byte, error) {
	m, _, err := r.t.Recv(ctx, 0)
	return m, err
}

func (r raw) Close() error { return r.t.Close() }
