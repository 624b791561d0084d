package worker

import (
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/gridmesh/gridmesh/gateway/wire"
)

// Defaults of the record of runs (Options.RecordRuns and friends).
const (
	DefaultRecordRuns  = 1 << 16
	DefaultRecordBytes = 64 << 20
	DefaultRecordTTL   = 15 * time.Minute
)

// record remembers, by transaction ID, the transactions the worker is
// running and those it ran recently, with their results, so that a
// transaction a gateway sends again (it died, and Prime delivered the
// transaction again to its successor) is joined to its run or answered
// from the record instead of run twice.
//
// A running entry stays until its run ends (runs are bounded by the
// worker's capacity). A finished one stays until it is older than ttl or
// pushed out, oldest first, by more than maxRuns finished entries or
// maxBytes of results. Its methods may be called concurrently.
type record struct {
	maxRuns  int
	maxBytes int
	ttl      time.Duration

	mu    sync.Mutex
	byID  map[string]*run
	done  []*run // finished runs, oldest first; done[head:] are live
	head  int
	bytes int // results held by done[head:]
}

// run is one transaction's run: running until done is closed, then res
// is its result.
type run struct {
	id    string
	done  chan struct{}
	res   *wire.TxResult // set before done is closed
	ended time.Time
	size  int
	span  *trace.SpanContext // the contract's span, when traced; set before done is closed
}

func newRecord(maxRuns, maxBytes int, ttl time.Duration) *record {
	return &record{maxRuns: maxRuns, maxBytes: maxBytes, ttl: ttl, byID: make(map[string]*run)}
}

// start returns the run of id: a new one the caller must run and end
// (fresh is true), or the one already running or recorded.
func (r *record) start(id string) (rn *run, fresh bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rn := r.byID[id]; rn != nil {
		return rn, false
	}
	rn = &run{id: id, done: make(chan struct{})}
	r.byID[id] = rn
	return rn, true
}

// finish records rn's result and wakes those waiting for it.
func (r *record) finish(rn *run, res *wire.TxResult, now time.Time) {
	rn.res, rn.ended = res, now
	rn.size = len(res.ID) + len(res.ResultJSON) + len(res.Logs) + len(res.Error) + 64
	r.mu.Lock()
	r.done = append(r.done, rn)
	r.bytes += rn.size
	r.pruneLocked(now)
	r.mu.Unlock()
	close(rn.done)
}

// forget drops rn, which did not produce a result to keep (it was refused,
// cancelled or given up), and wakes those waiting for it; res (nil, or a
// refusal) says why.
func (r *record) forget(rn *run, res *wire.TxResult) {
	r.mu.Lock()
	if r.byID[rn.id] == rn {
		delete(r.byID, rn.id)
	}
	r.mu.Unlock()
	rn.res = res
	close(rn.done)
}

// pruneLocked drops the finished runs past the bounds, oldest first.
func (r *record) pruneLocked(now time.Time) {
	for r.head < len(r.done) {
		rn := r.done[r.head]
		live := len(r.done) - r.head
		if live <= r.maxRuns && r.bytes <= r.maxBytes && now.Sub(rn.ended) < r.ttl {
			break
		}
		if r.byID[rn.id] == rn {
			delete(r.byID, rn.id)
		}
		r.bytes -= rn.size
		r.done[r.head] = nil
		r.head++
	}
	if r.head > len(r.done)/2 && r.head > 64 { // compact the consumed prefix
		r.done = append(r.done[:0], r.done[r.head:]...)
		r.head = 0
	}
}

// ids returns the IDs of the runs recorded now, running and finished,
// after dropping the expired ones.
func (r *record) ids(now time.Time) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pruneLocked(now)
	ids := make([]string, 0, len(r.byID))
	for id := range r.byID {
		ids = append(ids, id)
	}
	return ids
}

// size returns how many runs are recorded and the bytes of the finished
// ones' results.
func (r *record) size() (runs, bytes int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byID), r.bytes
}
