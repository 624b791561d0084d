package mux

import "testing"

// TestWorkerPool checks the idle-worker stack: last parked is taken first,
// the reaper retires only workers idle through a whole period, and close
// retires the rest and refuses later parks.
func TestWorkerPool(t *testing.T) {
	var p workerPool
	newWorker := func() *idleWorker { return &idleWorker{jobs: make(chan job, 1)} }
	retired := func(w *idleWorker) bool {
		select {
		case _, ok := <-w.jobs:
			return !ok
		default:
			return false
		}
	}
	a, b, c := newWorker(), newWorker(), newWorker()
	if !p.park(a) || !p.park(b) {
		t.Fatal("park refused on an open pool")
	}
	if w := p.take(); w != b {
		t.Fatal("take did not return the last parked worker")
	}
	p.reap() // a parked in this period: it stays
	if retired(a) {
		t.Fatal("worker retired before a whole idle period")
	}
	p.park(b)
	p.reap() // a was idle through the whole previous period; b was not
	if !retired(a) || retired(b) {
		t.Fatalf("after the second reap: a retired %v, b retired %v", retired(a), retired(b))
	}
	if w := p.take(); w != b {
		t.Fatal("take did not return b")
	}
	if w := p.take(); w != nil {
		t.Fatal("take on an empty pool returned a worker")
	}
	p.park(c)
	p.close()
	if !retired(c) {
		t.Fatal("close left an idle worker")
	}
	if p.park(b) {
		t.Fatal("park accepted after close")
	}
	p.reap() // a late reaper run is harmless
}
