package kvcore

import (
	"fmt"

	"github.com/webkv/webkv/kvcore/compute"
)

// Dist-mode operations: the local part (gathering the per-device values and
// summing them on the store's backend, compressing) runs on an engine worker;
// the network part is handed to the remote, which finishes the operation when
// the server answers. The key's variable stays held until then, so a pull
// issued after a push waits for the push's acknowledgement, which in
// dist_sync comes only once every worker pushed (MXNet's ordering).

// distPrepare reduces the inputs and returns the host words to send.
func (s *Store) distPrepare(e *entry, vals []*Array) ([]float32, compute.Compression, error) {
	s.mu.RLock()
	c := s.comp
	s.mu.RUnlock()
	ins, err := s.gather(e, vals, false)
	if err != nil {
		return nil, c, err
	}
	m, err := s.merged(e, ins)
	if err != nil {
		return nil, c, err
	}
	if c.Kind != compute.CompressNone {
		// One residual per key, after the local reduce (MXNet's dist rule).
		if e.resid, err = growBuffers(s.be, e.resid, 0, e.n); err != nil {
			return nil, c, err
		}
		pn := c.Kind.PackedLen(e.n)
		if e.packed, err = growBuffers(s.be, e.packed, 0, pn); err != nil {
			return nil, c, err
		}
		if err = s.be.Quantize(c, m, e.resid[0], e.packed[0]); err != nil {
			return nil, c, err
		}
		if len(e.hostP) < pn {
			e.hostP = make([]float32, pn)
		}
		return e.hostP[:pn], c, s.be.Read(e.packed[0], 0, e.hostP[:pn])
	}
	if cb, ok := m.(*compute.CPUBuffer); ok {
		// The buffer is held by this operation until the server answers.
		return cb.Float32s()[:e.n], c, nil
	}
	if len(e.host) < e.n {
		e.host = make([]float32, e.n)
	}
	return e.host[:e.n], c, s.be.Read(m, 0, e.host[:e.n])
}

func runDistPush(o *op) (bool, error) {
	s, e := o.s, o.e
	data, c, err := s.distPrepare(e, o.arrs[:o.n])
	if err != nil {
		return false, fmt.Errorf("kvcore: push key %v: %w", e.key, err)
	}
	s.rem.push(e.key, data, e.n, c, o.finishFn)
	return true, nil
}

func (e *entry) pullBuf() []float32 {
	if len(e.hostIn) < e.n {
		e.hostIn = make([]float32, e.n)
	}
	return e.hostIn[:e.n]
}

func runDistPull(o *op) (bool, error) {
	e := o.e
	buf := e.pullBuf()
	if outs := o.arrs[o.n:]; len(outs) == 1 {
		if cb, ok := outs[0].buf.(*compute.CPUBuffer); ok {
			// One host output: the answer is decoded straight into it
			// (the op holds its variable until done), saving a copy.
			buf, o.direct = cb.Float32s()[:e.n], true
		}
	}
	o.s.rem.pull(e.key, buf, o.pullDoneFn)
	return true, nil
}

func runDistPushPull(o *op) (bool, error) {
	s, e := o.s, o.e
	data, c, err := s.distPrepare(e, o.arrs[:o.n])
	if err != nil {
		return false, fmt.Errorf("kvcore: pushpull key %v: %w", e.key, err)
	}
	s.rem.pushPull(e.key, data, e.n, c, e.pullBuf(), o.pullDoneFn)
	return true, nil
}

// pullDone writes the pulled value into the outputs, then finishes o.
func (o *op) pullDone(err error) {
	if err == nil && !o.direct {
		e := o.e
		for _, a := range o.arrs[o.n:] {
			if werr := a.be.Write(a.buf, 0, e.hostIn[:e.n]); werr != nil {
				err = werr
				break
			}
		}
	}
	if err != nil {
		err = fmt.Errorf("kvcore: pull key %v: %w", o.e.key, err)
	}
	o.finish(err)
}
