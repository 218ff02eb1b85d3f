package psm

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"io"
	"time"

	"github.com/webkv/webkv/kvcore/wire"
)

// Identity: who may join a job and who may resume a worker. See the
// package doc's "Identity" section.

// resumeKeyBytes is the size of a resume key's secret (hex-encoded on the
// wire): 128 bits, beyond guessing.
const resumeKeyBytes = 16

// newResumeKey draws a worker's resume key from Config.Rand.
func (j *Job) newResumeKey() (string, error) {
	var b [resumeKeyBytes]byte
	if _, err := io.ReadFull(j.cfg.Rand, b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// indexTokens prepares the participant-token lookup: tokens are looked up
// by their SHA-256, so the lookup's timing says nothing useful about a
// token.
func (j *Job) indexTokens() {
	if len(j.cfg.WorkerTokens) == 0 {
		return
	}
	j.ptok = make(map[[sha256.Size]byte]string, len(j.cfg.WorkerTokens))
	for name, tok := range j.cfg.WorkerTokens {
		j.ptok[sha256.Sum256([]byte(tok))] = name
	}
}

// openJob reports whether the job admits anyone (no token of any kind).
func (j *Job) openJob() bool { return j.cfg.Token == "" && len(j.cfg.WorkerTokens) == 0 }

// participant returns the participant a token names ("" for the job
// token or an open job); ok is false when the token admits nobody.
func (j *Job) participant(tok string) (name string, ok bool) {
	if j.openJob() {
		return "", true
	}
	if j.cfg.Token != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(j.cfg.Token)) == 1 {
		return "", true
	}
	if j.ptok != nil && tok != "" {
		if name, ok := j.ptok[sha256.Sum256([]byte(tok))]; ok {
			return name, true
		}
	}
	return "", false
}

// Connect tells the Job that connection conn presented token when it was
// opened (the relay checked it at the websocket upgrade). That token
// replaces the one in conn's Hello, so a client that authenticated at the
// upgrade needs none in its Hello. Calling Connect is optional: without
// it, the Hello's token is checked.
func (j *Job) Connect(conn ConnID, token string) {
	if j.connTok == nil {
		j.connTok = map[ConnID]string{}
	}
	j.connTok[conn] = token
}

// Heard tells the Job that bytes from connection conn arrived at time at
// (a part of a frame is enough). It counts as a heartbeat of conn's
// worker: a worker uploading a big push over a slow link is not silent,
// though its pings wait behind the push. The caller feeds it before Tick;
// it returns nothing to do.
func (j *Job) Heard(at time.Duration, conn ConnID) {
	if w := j.conns[conn]; w != nil && at > w.lastSeen {
		w.lastSeen = at
	}
}

// Empty reports whether the Job holds nothing worth keeping: no worker, no
// key, no optimizer, no compression, no waiting init. A server may drop
// an empty job (and recreate it on demand) once no connection uses it.
func (j *Job) Empty() bool {
	return len(j.workers) == 0 && len(j.keys) == 0 && j.opt == nil && len(j.heldInits) == 0 &&
		j.comp.Kind == 0
}

// markIdle notes when the job lost its last worker (for IdleExpiry).
func (j *Job) markIdle(now time.Duration) {
	if len(j.workers) == 0 && !j.idle {
		j.idle, j.idleFrom = true, now
	}
	if len(j.workers) > 0 {
		j.idle = false
	}
}

// expired reports whether the job has had no worker for IdleExpiry.
func (j *Job) expired(now time.Duration) bool {
	return j.cfg.IdleExpiry > 0 && j.idle && len(j.workers) == 0 && now-j.idleFrom >= j.cfg.IdleExpiry
}

// checkIdentity checks a Hello's credentials against the job and, when it
// resumes, against worker w: the token (the connection's, if it
// presented one at the upgrade) must admit the participant, and a resume
// must carry w's key. The returned participant is the token's.
func (j *Job) checkIdentity(from ConnID, h *wire.Hello, w *worker) (string, *wire.Error) {
	tok := h.Token
	if t, ok := j.connTok[from]; ok {
		tok = t
	}
	part, ok := j.participant(tok)
	if !ok {
		return "", wire.Errorf(wire.CodeAuth, "job %s: bad or missing token", short(j.cfg.Job))
	}
	if w == nil {
		return part, nil
	}
	if w.key == "" {
		return "", wire.Errorf(wire.CodeRemoved, "worker %s of job %s was checkpointed without a resume key (an older relay): join as a new worker", short(w.id), short(j.cfg.Job))
	}
	if subtle.ConstantTimeCompare([]byte(h.ResumeKey), []byte(w.key)) != 1 {
		return "", wire.Errorf(wire.CodeAuth, "worker %s of job %s: wrong or missing resume key (a worker resumes with the key its Welcome gave)", short(w.id), short(j.cfg.Job))
	}
	if part != w.participant {
		return "", wire.Errorf(wire.CodeAuth, "worker %s of job %s belongs to another participant's token", short(w.id), short(j.cfg.Job))
	}
	return part, nil
}

// participantWorker returns the member that participant p holds, if any.
func (j *Job) participantWorker(p string) *worker {
	if p == "" {
		return nil
	}
	for _, w := range j.workers {
		if w.participant == p {
			return w
		}
	}
	return nil
}
