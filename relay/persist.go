//go:build !js && !wasip1

package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// checkpointDB keeps one snapshot per job in a bbolt file.
//
// Why bbolt: a single file, no daemon, and every Update is one atomic,
// fsynced transaction (copy-on-write B+tree with a meta page switch), so a
// kill -9 in the middle of a checkpoint leaves the previous checkpoint
// intact. Each job is one bucket holding the psm snapshot and a small header
// (format version, round, wall time); the bucket is rewritten in one
// transaction so snapshot and header never disagree.
type checkpointDB struct {
	db *bolt.DB
	// failSave, when set (tests), makes save fail with its error.
	failSave atomic.Pointer[error]
}

const (
	ckptVersion  = 1
	bucketJobs   = "jobs"
	keySnapshot  = "snapshot"
	keyHeader    = "header"
	ckptFileName = "relay.db"
)

// openCheckpointDB opens (creating if needed) dir/relay.db. The file lock
// makes a second relay on the same data dir fail fast instead of corrupting
// it.
func openCheckpointDB(dir string) (*checkpointDB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("relay: data dir %q: %w", dir, err)
	}
	path := filepath.Join(dir, ckptFileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("relay: %s is locked by another relay process", path)
		}
		return nil, fmt.Errorf("relay: open %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists([]byte(bucketJobs))
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("relay: init %s: %w", path, err)
	}
	return &checkpointDB{db: db}, nil
}

// checkpoint is what is stored per job.
type checkpoint struct {
	Round    uint64
	Time     time.Time
	Snapshot []byte
}

// save writes job's snapshot atomically (one fsynced transaction).
func (c *checkpointDB) save(job string, ck checkpoint) error {
	if e := c.failSave.Load(); e != nil {
		return fmt.Errorf("relay: checkpoint job %q: %w", job, *e)
	}
	hdr := make([]byte, 24)
	binary.LittleEndian.PutUint64(hdr[0:], ckptVersion)
	binary.LittleEndian.PutUint64(hdr[8:], ck.Round)
	binary.LittleEndian.PutUint64(hdr[16:], uint64(ck.Time.UnixNano()))
	err := c.db.Update(func(tx *bolt.Tx) error {
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
	if err != nil {
		return fmt.Errorf("relay: checkpoint job %q: %w", job, err)
	}
	return nil
}

// load returns every stored job's checkpoint. Values are copied out of the
// mmap (they are only valid inside the transaction).
func (c *checkpointDB) load() (map[string]checkpoint, error) {
	out := map[string]checkpoint{}
	err := c.db.View(func(tx *bolt.Tx) error {
		jobs := tx.Bucket([]byte(bucketJobs))
		return jobs.ForEachBucket(func(name []byte) error {
			b := jobs.Bucket(name)
			hdr := b.Get([]byte(keyHeader))
			snap := b.Get([]byte(keySnapshot))
			if len(hdr) != 24 || snap == nil {
				return fmt.Errorf("job %q: incomplete checkpoint", name)
			}
			if v := binary.LittleEndian.Uint64(hdr); v != ckptVersion {
				return fmt.Errorf("job %q: checkpoint format %d, this relay reads %d", name, v, ckptVersion)
			}
			out[string(name)] = checkpoint{
				Round:    binary.LittleEndian.Uint64(hdr[8:]),
				Time:     time.Unix(0, int64(binary.LittleEndian.Uint64(hdr[16:]))),
				Snapshot: append([]byte(nil), snap...),
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("relay: read checkpoints: %w", err)
	}
	return out, nil
}

func (c *checkpointDB) close() error { return c.db.Close() }
