//go:build !js && !wasip1

package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// checkpointDB keeps one snapshot per job in a bbolt file.
//
// Why bbolt: a single file, no daemon, and every Update is one atomic,
// fsynced transaction (copy-on-write B+tree with a meta page switch), so a
// kill -9 in the middle of a checkpoint leaves the previous checkpoint
// intact. Each job is one bucket holding the psm snapshot and a small header
// (format version, round, wall time); the bucket is rewritten in one
// transaction so snapshot and header never disagree.
//
// A file can still be damaged (a disk error, a truncated copy, another
// program); bbolt trusts its file and crashes the process on many kinds of
// damage (a fault reading a page past the end, a failed assertion). So the
// file is inspected before it is used (see inspect) and every bbolt call
// runs under guard: damage becomes an error naming the file, never a Go
// fatal error or panic.
type checkpointDB struct {
	db   *bolt.DB
	path string
	// failSave, when set (tests), makes save fail with its error;
	// delaySave (tests) makes it take that much longer, as a big model's
	// checkpoint on a slow disk does.
	failSave  atomic.Pointer[error]
	delaySave atomic.Int64
}

const (
	ckptVersion      = 1
	bucketJobs       = "jobs"
	bucketQuarantine = "quarantine"
	keySnapshot      = "snapshot"
	keyHeader        = "header"
	ckptFileName     = "relay.db"
)

// ErrCorrupt is wrapped by the errors of a damaged checkpoint file.
var ErrCorrupt = errors.New("relay: corrupt checkpoint file")

// checkpoint is what is stored per job.
type checkpoint struct {
	Round    uint64
	Time     time.Time
	Snapshot []byte
}

// guard runs fn, turning a panic (a bbolt assertion) or a memory fault (a
// page of the mapped file that is not there) into an error.
func guard(what string, fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s: %v", ErrCorrupt, what, r)
		}
	}()
	return fn()
}

// openCheckpointDB opens (creating if needed) dir/relay.db and returns
// the checkpoints of its jobs and the jobs in quarantine (with why). A
// damaged file is an error unless every job in it could be told apart:
// then the damaged ones are quarantined, the file is moved aside (named
// in the log and the quarantine reasons) and a fresh one holds the rest.
// The file lock makes a second relay on the same data dir fail fast
// instead of corrupting it.
func openCheckpointDB(dir string, log *slog.Logger, clearQuarantine bool) (*checkpointDB, map[string]checkpoint, map[string]string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, nil, fmt.Errorf("relay: data dir %q: %w", dir, err)
	}
	path := filepath.Join(dir, ckptFileName)
	cks, quar := map[string]checkpoint{}, map[string]string{}
	if _, err := os.Stat(path); err == nil {
		in, err := inspect(path)
		if err != nil {
			return nil, nil, nil, err
		}
		cks, quar = in.jobs, in.quarantine
		if in.damaged() {
			if err := rewrite(path, in, log); err != nil {
				return nil, nil, nil, err
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil, fmt.Errorf("relay: checkpoint file %s: %w", path, err)
	}
	c, err := openBolt(path)
	if err != nil {
		return nil, nil, nil, err
	}
	if clearQuarantine && len(quar) > 0 {
		err := c.update("clear the quarantine", func(tx *bolt.Tx) error {
			if tx.Bucket([]byte(bucketQuarantine)) == nil {
				return nil
			}
			return tx.DeleteBucket([]byte(bucketQuarantine))
		})
		if err != nil {
			c.close()
			return nil, nil, nil, err
		}
		log.Warn("quarantine cleared: the ids of the quarantined jobs are free again", "jobs", sortedKeys(quar))
		quar = map[string]string{}
	}
	return c, cks, quar, nil
}

// openBolt opens path for writing and makes sure its buckets exist.
func openBolt(path string) (*checkpointDB, error) {
	var db *bolt.DB
	err := guard("open "+path, func() error {
		var err error
		db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
		return err
	})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("relay: %s is locked by another relay process", path)
		}
		return nil, fmt.Errorf("relay: open %s: %w", path, err)
	}
	c := &checkpointDB{db: db, path: path}
	if err := c.update("init", func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists([]byte(bucketJobs))
		return err
	}); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// inspection is what inspect found in a checkpoint file.
type inspection struct {
	jobs       map[string]checkpoint
	quarantine map[string]string // old entries and jobs found damaged now
	found      map[string]string // jobs found damaged now (also in quarantine)
	problems   []string          // bbolt's consistency check, and other damage
}

func (in *inspection) damaged() bool { return len(in.found) > 0 || len(in.problems) > 0 }

// inspect reads a checkpoint file without changing it: its size against
// its meta page (bbolt maps the file and would fault past its end), every
// job's bucket (each on its own: a damaged one is quarantined), and
// bbolt's own consistency check (Tx.Check). It fails only when the file
// cannot be read as a whole or its jobs cannot be listed.
func inspect(path string) (*inspection, error) {
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("%w %s: %s; no job was restored. Move the file aside to start empty, or restore a backup",
			ErrCorrupt, path, fmt.Sprintf(format, args...))
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("relay: checkpoint file %s: %w", path, err)
	}
	if st.Size() == 0 {
		return nil, corrupt("it is empty (0 bytes), not a checkpoint database (a fresh relay creates a non-empty one)")
	}
	var db *bolt.DB
	err = guard("open", func() error {
		var err error
		db, err = bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
		return err
	})
	if err != nil {
		switch {
		case errors.Is(err, berrors.ErrTimeout):
			return nil, fmt.Errorf("relay: %s is locked by another relay process", path)
		case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
			return nil, corrupt("no valid meta page (%v): not a checkpoint database, or its header is damaged", err)
		}
		return nil, corrupt("%v", err)
	}
	defer db.Close()
	in := &inspection{jobs: map[string]checkpoint{}, quarantine: map[string]string{}, found: map[string]string{}}
	var listErr error
	err = guard("read", func() error {
		return db.View(func(tx *bolt.Tx) error {
			ps := int64(db.Info().PageSize)
			if ps <= 0 || st.Size()%ps != 0 {
				return corrupt("its size, %d bytes, is not a multiple of its page size (%d)", st.Size(), ps)
			}
			if need := tx.Size(); st.Size() < need {
				return corrupt("truncated: %d bytes, its meta page says %d (%d pages of %d)", st.Size(), need, need/ps, ps)
			}
			if q := tx.Bucket([]byte(bucketQuarantine)); q != nil {
				if err := guard("quarantine list", func() error {
					return q.ForEach(func(k, v []byte) error {
						in.quarantine[string(k)] = string(v)
						return nil
					})
				}); err != nil {
					in.problems = append(in.problems, err.Error())
				}
			}
			jobs := tx.Bucket([]byte(bucketJobs))
			if jobs == nil {
				return nil
			}
			var names []string
			listErr = guard("job list", func() error {
				return jobs.ForEachBucket(func(name []byte) error {
					names = append(names, string(name))
					return nil
				})
			})
			if listErr != nil {
				return nil
			}
			for _, name := range names {
				var ck checkpoint
				err := guard("job "+name, func() error {
					var err error
					ck, err = readJob(jobs, name)
					return err
				})
				if err != nil {
					why := fmt.Sprintf("unreadable in %s: %v", path, err)
					in.found[name], in.quarantine[name] = why, why
					continue
				}
				in.jobs[name] = ck
			}
			// bbolt's consistency check, on pages the reads above have all
			// touched safely.
			for e := range tx.Check() {
				if len(in.problems) < 10 {
					in.problems = append(in.problems, e.Error())
				}
			}
			return nil
		})
	})
	if err != nil {
		if errors.Is(err, ErrCorrupt) && !strings.Contains(err.Error(), path) {
			return nil, corrupt("%v", err)
		}
		return nil, err
	}
	if listErr != nil {
		return nil, corrupt("its list of jobs is damaged (%v)", listErr)
	}
	return in, nil
}

// readJob copies job name's checkpoint out of the mapped file.
func readJob(jobs *bolt.Bucket, name string) (checkpoint, error) {
	b := jobs.Bucket([]byte(name))
	if b == nil {
		return checkpoint{}, errors.New("not a bucket")
	}
	hdr := b.Get([]byte(keyHeader))
	snap := b.Get([]byte(keySnapshot))
	if len(hdr) != 24 || snap == nil {
		return checkpoint{}, errors.New("incomplete checkpoint (no header or snapshot)")
	}
	if v := binary.LittleEndian.Uint64(hdr); v != ckptVersion {
		return checkpoint{}, fmt.Errorf("checkpoint format %d, this relay reads %d", v, ckptVersion)
	}
	return checkpoint{
		Round:    binary.LittleEndian.Uint64(hdr[8:]),
		Time:     time.Unix(0, int64(binary.LittleEndian.Uint64(hdr[16:]))),
		Snapshot: append([]byte(nil), snap...),
	}, nil
}

// rewrite moves a damaged file aside and writes a fresh one with the jobs
// that were read whole and the quarantine record: nothing is ever written
// into a damaged file.
func rewrite(path string, in *inspection, log *slog.Logger) error {
	aside := fmt.Sprintf("%s.corrupt-%s", path, time.Now().UTC().Format("20060102T150405Z"))
	if err := os.Rename(path, aside); err != nil {
		return fmt.Errorf("%w %s: moving it aside: %v", ErrCorrupt, path, err)
	}
	log.Error("checkpoint file damaged: moved aside; its readable jobs go to a fresh file, the others are quarantined",
		"file", path, "moved_to", aside, "problems", in.problems, "quarantined", sortedKeys(in.found))
	for name := range in.found {
		in.quarantine[name] = fmt.Sprintf("unreadable in %s (moved aside from %s)", aside, path)
	}
	c, err := openBolt(path)
	if err != nil {
		return err
	}
	defer c.close()
	for name, ck := range in.jobs {
		if err := c.save(name, ck); err != nil {
			return err
		}
	}
	for name, why := range in.quarantine {
		if err := c.setQuarantine(name, why); err != nil {
			return err
		}
	}
	return nil
}

// update runs fn in one write transaction under guard.
func (c *checkpointDB) update(what string, fn func(tx *bolt.Tx) error) error {
	err := guard(what, func() error { return c.db.Update(fn) })
	if err != nil {
		return fmt.Errorf("relay: %s: %s: %w", c.path, what, err)
	}
	return nil
}

// save writes job's snapshot atomically (one fsynced transaction).
func (c *checkpointDB) save(job string, ck checkpoint) error {
	if e := c.failSave.Load(); e != nil {
		return fmt.Errorf("relay: checkpoint job %q: %w", job, *e)
	}
	if d := c.delaySave.Load(); d > 0 {
		time.Sleep(time.Duration(d))
	}
	hdr := make([]byte, 24)
	binary.LittleEndian.PutUint64(hdr[0:], ckptVersion)
	binary.LittleEndian.PutUint64(hdr[8:], ck.Round)
	binary.LittleEndian.PutUint64(hdr[16:], uint64(ck.Time.UnixNano()))
	return c.update(fmt.Sprintf("checkpoint job %q", job), func(tx *bolt.Tx) error {
		jobs := tx.Bucket([]byte(bucketJobs))
		b, err := jobs.CreateBucketIfNotExists([]byte(job))
		if err != nil {
			return err
		}
		if err := b.Put([]byte(keySnapshot), ck.Snapshot); err != nil {
			return err
		}
		return b.Put([]byte(keyHeader), hdr)
	})
}

// remove deletes job's checkpoint (a dropped job).
func (c *checkpointDB) remove(job string) error {
	return c.update(fmt.Sprintf("delete job %q", job), func(tx *bolt.Tx) error {
		err := tx.Bucket([]byte(bucketJobs)).DeleteBucket([]byte(job))
		if errors.Is(err, berrors.ErrBucketNotFound) {
			return nil
		}
		return err
	})
}

// quarantine takes job's checkpoint out of the jobs (it did not restore)
// and records why; the file is sound, only that job's data is not, and it
// stays in the file's free pages until overwritten.
func (c *checkpointDB) quarantine(job, why string) error {
	if err := c.remove(job); err != nil {
		return err
	}
	return c.setQuarantine(job, why)
}

func (c *checkpointDB) setQuarantine(job, why string) error {
	return c.update(fmt.Sprintf("quarantine job %q", job), func(tx *bolt.Tx) error {
		q, err := tx.CreateBucketIfNotExists([]byte(bucketQuarantine))
		if err != nil {
			return err
		}
		return q.Put([]byte(job), []byte(why))
	})
}

func (c *checkpointDB) close() error { return c.db.Close() }

func sortedKeys[V any](m map[string]V) []string {
	s := make([]string, 0, len(m))
	for k := range m {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}
