package kvcore

import (
	"bytes"
	"errors"
	"github.com/webkv/webkv/kvcore/compute"
	"github.com/webkv/webkv/kvcore/optimizer"
	"testing"
)

// A device store (here on the CPU fallback) with 2bit compression quantizes
// each device's value with its own residual before summing (MXNet
// comm.h ReduceCompressed): 0.4 stays in the residuals, the second 0.4 makes
// 0.8 ≥ 0.5, so each device sends +0.5.
func TestDeviceCompressionPerDeviceResidual(t *testing.T) {
	t.Parallel()
	s, err := Create(bg, "device", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Backend().Name() != "cpu" {
		t.Fatalf("fallback backend %q", s.Backend().Name())
	}
	if err := s.SetGradientCompression(bg, compute.Compression{Kind: compute.Compress2Bit, Threshold: 0.5}); err != nil {
		t.Fatal(err)
	}
	k := IntKey(0)
	s.Init(bg, k, full(t, 7, 33))
	out := full(t, 0, 33)
	for round, want := range []float32{0, 1, 1, 1, 1, 0} {
		if err := s.Push(k, full(t, 0.4, 33), full(t, 0.4, 33)); err != nil {
			t.Fatal(err)
		}
		s.Pull(k, out)
		mustEqual(t, out, want)
		_ = round
	}
	if err := s.SetGradientCompression(bg, compute.Compression{Kind: compute.Compress1Bit}); !errors.Is(err, ErrBadCompression) {
		t.Fatalf("changing compression: %v", err)
	}
	if err := s.SetGradientCompression(bg, compute.Compression{Kind: compute.Compress2Bit, Threshold: 0}); !errors.Is(err, ErrBadCompression) {
		t.Fatalf("2bit threshold 0: %v", err)
	}
}

// States saved from one store load into another and continue identically;
// a corrupt file changes nothing.
func TestSaveLoadOptimizerStates(t *testing.T) {
	t.Parallel()
	mk := func() *Store {
		s := newLocal(t)
		s.Init(bg, IntKey(1), full(t, 1, 64))
		s.Init(bg, IntKey(2), full(t, 2, 5))
		s.SetOptimizer(bg, optimizer.Adam(0.01))
		return s
	}
	a := mk()
	for range 3 {
		a.Push(IntKey(1), full(t, 0.5, 64))
		a.Push(IntKey(2), full(t, -0.25, 5))
	}
	var buf bytes.Buffer
	if err := a.SaveOptimizerStates(bg, &buf, true); err != nil {
		t.Fatal(err)
	}
	saved := buf.Bytes()
	// b starts from a's current weights, with no optimizer and no states.
	b := newLocal(t)
	for _, k := range []int{1, 2} {
		n := map[int]int{1: 64, 2: 5}[k]
		o := full(t, 0, n)
		a.Pull(IntKey(k), o)
		if err := b.Init(bg, IntKey(k), o); err != nil {
			t.Fatal(err)
		}
	}
	// Corrupt or truncated input: an error, and b stays without optimizer.
	bad := append([]byte(nil), saved...)
	bad[len(bad)/2] ^= 0xff
	if err := b.LoadOptimizerStates(bg, bytes.NewReader(bad)); err == nil {
		t.Fatal("corrupt states loaded without error")
	}
	if err := b.LoadOptimizerStates(bg, bytes.NewReader(saved[:len(saved)-3])); err == nil {
		t.Fatal("truncated states loaded without error")
	}
	if b.opt != nil {
		t.Fatal("failed load changed the optimizer")
	}
	if err := b.LoadOptimizerStates(bg, bytes.NewReader(saved)); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		for _, s := range []*Store{a, b} {
			s.Push(IntKey(1), full(t, 0.5, 64))
			s.Push(IntKey(2), full(t, -0.25, 5))
		}
	}
	for _, k := range []int{1, 2} {
		n := 64
		if k == 2 {
			n = 5
		}
		oa, ob := full(t, 0, n), full(t, 0, n)
		a.Pull(IntKey(k), oa)
		b.Pull(IntKey(k), ob)
		da, _ := oa.ToSlice(bg)
		db, _ := ob.ToSlice(bg)
		for i := range da {
			if da[i] != db[i] {
				t.Fatalf("key %d element %d: %v after reload, %v continuing", k, i, db[i], da[i])
			}
		}
	}
	// Loading into a store that lacks a key fails and changes nothing.
	c := newLocal(t)
	c.Init(bg, IntKey(1), full(t, 1, 64))
	if err := c.LoadOptimizerStates(bg, bytes.NewReader(saved)); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("load with missing key: %v", err)
	}
}
