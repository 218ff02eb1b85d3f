//go:build !js && !wasip1

package relay

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Admission: who takes which connection slot.
//
// A connection that presented a valid token at the upgrade is
// authenticated from the start and takes a slot of the global limit
// (MaxConns) and of its job's (MaxConnsPerJob), the slots honest peers
// need. Every other connection (an open relay's, a Hello-token client's,
// a refused browser's) is unauthenticated: it takes a slot of a separate,
// small budget (MaxPreAuth, and MaxPreAuthPerAddr per remote address)
// until its Hello is accepted, and only then moves to the global and job
// slots. So token-less connections, however many, cannot keep an
// authenticated peer out.

// slots counts the connection slots in use (under mu).
type slots struct {
	mu      sync.Mutex
	conns   int            // authenticated, all jobs
	perJob  map[string]int // authenticated, by job
	pre     int            // unauthenticated
	preAddr map[string]int // unauthenticated, by remote host
}

// slot is one connection's hold on the slots; release returns it.
type slot struct {
	s    *Server
	job  string // authenticated: the job's slot
	addr string // unauthenticated: the address's slot
	pre  bool
	held bool
}

var errFull = errors.New("too many connections")

// admitAuthed takes an authenticated slot of job.
func (s *Server) admitAuthed(job string) (*slot, error) {
	a := &s.slots
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conns >= s.cfg.MaxConns {
		s.rm.refusedFull.Add(1)
		return nil, fmt.Errorf("%w: the relay's %d are in use", errFull, s.cfg.MaxConns)
	}
	if a.perJob[job] >= s.cfg.MaxConnsPerJob {
		s.rm.refusedFull.Add(1)
		return nil, fmt.Errorf("%w for this job: its %d are in use", errFull, s.cfg.MaxConnsPerJob)
	}
	a.conns++
	a.perJob[job]++
	s.changes.note()
	return &slot{s: s, job: job, held: true}, nil
}

// admitPreAuth takes an unauthenticated slot for a peer at remote.
func (s *Server) admitPreAuth(remote string) (*slot, error) {
	host := hostOf(remote)
	a := &s.slots
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pre >= s.cfg.MaxPreAuth {
		s.rm.refusedPreAuth.Add(1)
		return nil, fmt.Errorf("%w: the %d slots of connections without a token at the upgrade are in use", errFull, s.cfg.MaxPreAuth)
	}
	if s.cfg.MaxPreAuthPerAddr > 0 && a.preAddr[host] >= s.cfg.MaxPreAuthPerAddr {
		s.rm.refusedPreAuth.Add(1)
		return nil, fmt.Errorf("%w from %s without a token at the upgrade (%d)", errFull, host, s.cfg.MaxPreAuthPerAddr)
	}
	a.pre++
	a.preAddr[host]++
	s.changes.note()
	return &slot{s: s, addr: host, pre: true, held: true}, nil
}

// promote moves an unauthenticated slot to job's authenticated one (its
// Hello is about to be judged); an authenticated slot stays as it is.
func (sl *slot) promote(job string) error {
	if !sl.pre {
		return nil
	}
	n, err := sl.s.admitAuthed(job)
	if err != nil {
		return err
	}
	sl.release()
	*sl = *n
	return nil
}

func (sl *slot) release() {
	if sl == nil || !sl.held {
		return
	}
	sl.held = false
	defer sl.s.changes.note() // once the counts are down
	a := &sl.s.slots
	a.mu.Lock()
	defer a.mu.Unlock()
	if sl.pre {
		a.pre--
		if a.preAddr[sl.addr]--; a.preAddr[sl.addr] <= 0 {
			delete(a.preAddr, sl.addr)
		}
		return
	}
	a.conns--
	if a.perJob[sl.job]--; a.perJob[sl.job] <= 0 {
		delete(a.perJob, sl.job)
	}
}

// connCounts returns the authenticated and unauthenticated connections.
func (s *Server) connCounts() (authed, pre int) {
	s.slots.mu.Lock()
	defer s.slots.mu.Unlock()
	return s.slots.conns, s.slots.pre
}

// hostOf is the host part of a remote address (the address itself if it
// has no port).
func hostOf(remote string) string {
	if h, _, err := net.SplitHostPort(remote); err == nil {
		return h
	}
	return remote
}

// checkJobName refuses job ids that are not short, printable UTF-8: they
// end up in logs, metrics labels and file keys.
func checkJobName(job string) error {
	switch {
	case job == "":
		return errors.New("missing job query parameter")
	case len(job) > maxJobName:
		return fmt.Errorf("job id of %d bytes (at most %d)", len(job), maxJobName)
	case !utf8.ValidString(job):
		return errors.New("job id is not valid UTF-8")
	}
	for _, r := range job {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("job id contains the unprintable character %U", r)
		}
	}
	return nil
}

const maxJobName = 256

// httpRefuse answers a refused upgrade with status and the reason.
func httpRefuse(w http.ResponseWriter, status int, why error) {
	http.Error(w, refusedPrefix+why.Error(), status)
}
