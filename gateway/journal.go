package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/gridmesh/gridmesh/gateway/wire"
	"github.com/gridmesh/gridmesh/internal/defaults"
)

var journalBucket = []byte("results")

// JournalOptions configure a Journal. The zero value works.
type JournalOptions struct {
	// Retention is how long a result that was sent to Prime stays,
	// counted from when it was written (Put), to answer a redelivery
	// without running the transaction again. Results not yet sent are
	// kept until they are, up to MaxAge. Default 24h.
	Retention time.Duration
	// MaxAge is how long a result stays at most, sent or not. It bounds
	// the results whose sending was never recorded: marks are written in
	// the background, so a crash loses the last ones, and Prime, which
	// has those results, never delivers them again to mark them. Should
	// Prime deliver a transaction after its result was pruned, it runs
	// again and is still answered once. Default 7 days; at least
	// Retention.
	MaxAge time.Duration
	// PruneInterval is how often sent results older than Retention are
	// deleted. Default: Retention/10, at most one minute.
	PruneInterval time.Duration
	// MaxPendingMarks bounds the "sent" marks (MarkSent) waiting to be
	// written: while the disk is slow, marks pile up and the next write
	// takes them all at once. Past the bound a mark is dropped, counted
	// (JournalStats.MarksDropped) and logged, rather than block Prime's
	// sender: its result then stays until MaxAge instead of Retention,
	// and is still answered from the journal if Prime delivers it again.
	// A mark costs its transaction ID, some 60 bytes. Default
	// DefaultMaxPendingMarks.
	MaxPendingMarks int
	// Logger receives pruning and write failures. Default: discard.
	Logger *slog.Logger
}

// DefaultMaxPendingMarks is JournalOptions.MaxPendingMarks's default:
// about 16 MiB of transaction IDs, some 13 s of answers at 20,000 a
// second with the disk stalled.
const DefaultMaxPendingMarks = 1 << 18

// markBatch is how many pending marks wake the writer before its next
// tick.
const markBatch = 1024

// markFlushInterval is how often pending marks are written.
const markFlushInterval = 50 * time.Millisecond

// JournalStats counts a Journal's "sent" marks.
type JournalStats struct {
	MarksPending int    `json:"marks_pending"` // marks waiting to be written
	MarksDropped uint64 `json:"marks_dropped"` // marks dropped: MaxPendingMarks were waiting
}

// Journal keeps every transaction result in a bbolt file from the moment
// it is known until it has reached Prime and is Retention old, so
// that neither a lost stream nor a gateway restart loses a result or runs
// a transaction twice.
//
// Put is durable when it returns (concurrent Puts share one fsync, through
// bbolt's Batch). MarkSent never blocks: marks are written in the
// background, those that wait together in one transaction, and a lost or
// dropped mark only keeps an entry longer (up to MaxAge). All methods may
// be called concurrently.
type Journal struct {
	db   *bolt.DB
	opts JournalOptions

	mu       sync.Mutex
	pending  []string // marks waiting for the writer
	dropped  uint64   // marks dropped, all told
	dropping bool     // marks are being dropped: logged once until the writer catches up
	closed   bool

	wake chan struct{} // buffered 1: markBatch marks wait
	stop chan struct{}
	done chan struct{}
	once sync.Once

	beforeMarks func(n int) // if set (tests), called before each write of n marks
}

// OpenJournal opens (creating if needed) the journal at path and starts
// its background pruning and mark writing. A journal file is locked by
// one process at a time: a second open fails within a second.
func OpenJournal(path string, opts JournalOptions) (*Journal, error) {
	return openJournal(path, opts, nil)
}

// openJournal is OpenJournal with a hook called before each write of
// marks (tests slow the disk down with it).
func openJournal(path string, opts JournalOptions, beforeMarks func(n int)) (*Journal, error) {
	if opts.Retention < 0 || opts.PruneInterval < 0 {
		return nil, configError("journal retention and prune interval", "must not be negative")
	}
	if opts.MaxAge < 0 || opts.MaxPendingMarks < 0 {
		return nil, configError("journal max age and max pending marks", "must not be negative")
	}
	defaults.Set(&opts.Retention, 24*time.Hour)
	defaults.Set(&opts.MaxAge, 7*24*time.Hour)
	opts.MaxAge = max(opts.MaxAge, opts.Retention)
	defaults.Set(&opts.PruneInterval, min(opts.Retention/10, time.Minute))
	defaults.Set(&opts.MaxPendingMarks, DefaultMaxPendingMarks)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("gateway: open journal %s: %w", path, err)
	}
	db.MaxBatchDelay = 2 * time.Millisecond
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(journalBucket)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("gateway: init journal %s: %w", path, err)
	}
	j := &Journal{db: db, opts: opts, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}), beforeMarks: beforeMarks}
	go j.loop()
	return j, nil
}

// Put records res durably.
func (j *Journal) Put(res *wire.TxResult) error {
	return j.put(res, time.Now())
}

func (j *Journal) put(res *wire.TxResult, now time.Time) error {
	e := journalEntry{Result: *res, Done: now.UnixNano()}
	val, err := e.MarshalMsg(nil)
	if err != nil {
		return fmt.Errorf("gateway: journal encode %s: %w", res.ID, err)
	}
	err = j.db.Batch(func(tx *bolt.Tx) error {
		return tx.Bucket(journalBucket).Put([]byte(res.ID), val)
	})
	if err != nil {
		return fmt.Errorf("gateway: journal put %s: %w", res.ID, err)
	}
	return nil
}

// Get returns the result recorded for the transaction id.
func (j *Journal) Get(id string) (*wire.TxResult, bool, error) {
	var e journalEntry
	var found bool
	err := j.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(journalBucket).Get([]byte(id))
		if v == nil {
			return nil
		}
		found = true
		_, err := e.UnmarshalMsg(v) // copies out of the mmap
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("gateway: journal get %s: %w", id, err)
	}
	if !found {
		return nil, false, nil
	}
	return &e.Result, true, nil
}

// MarkSent notes that the result for id reached Prime; from then on
// Retention counts. It never waits for the disk: the mark is written in
// the background, with the others pending. If MaxPendingMarks marks are
// pending already (the disk is that slow), the mark is dropped and
// counted; after Close it is ignored.
func (j *Journal) MarkSent(id string) {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return
	}
	if len(j.pending) >= j.opts.MaxPendingMarks {
		j.dropped++
		first := !j.dropping
		j.dropping = true
		j.mu.Unlock()
		if first {
			j.opts.Logger.Warn("gateway: journal marks dropped: the disk is behind; their results stay until MaxAge (journal_max_age)",
				"pending", j.opts.MaxPendingMarks)
		}
		return
	}
	j.pending = append(j.pending, id)
	full := len(j.pending) == markBatch
	j.mu.Unlock()
	if full {
		select {
		case j.wake <- struct{}{}:
		default:
		}
	}
}

// Stats returns the journal's mark counters.
func (j *Journal) Stats() JournalStats {
	j.mu.Lock()
	defer j.mu.Unlock()
	return JournalStats{MarksPending: len(j.pending), MarksDropped: j.dropped}
}

// takeMarks returns the pending marks and empties the queue; the end of
// a spell of drops is logged.
func (j *Journal) takeMarks() []string {
	j.mu.Lock()
	batch := j.pending
	j.pending = nil
	ended, dropped := j.dropping, j.dropped
	j.dropping = false
	j.mu.Unlock()
	if ended {
		j.opts.Logger.Info("gateway: journal marks no longer dropped", "dropped_total", dropped)
	}
	return batch
}

// Len returns the number of results in the journal.
func (j *Journal) Len() int {
	n := 0
	_ = j.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(journalBucket).Stats().KeyN
		return nil
	})
	return n
}

// Prune deletes the results sent to Prime before now minus Retention, and
// those recorded before now minus MaxAge, and returns how many it
// deleted. It runs by itself every PruneInterval.
func (j *Journal) Prune(now time.Time) (int, error) {
	cutoff := now.Add(-j.opts.Retention).UnixNano()
	oldest := now.Add(-j.opts.MaxAge).UnixNano()
	n := 0
	err := j.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(journalBucket).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var e journalEntry
			if _, err := e.UnmarshalMsg(v); err != nil || (e.Sent && e.Done < cutoff) || e.Done < oldest {
				if err := c.Delete(); err != nil {
					return err
				}
				n++
			}
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("gateway: journal prune: %w", err)
	}
	return n, nil
}

// Close stops the background work, writes the pending marks and closes
// the file. It is idempotent.
func (j *Journal) Close() error {
	var err error
	j.once.Do(func() {
		j.mu.Lock()
		j.closed = true
		j.mu.Unlock()
		close(j.stop)
		<-j.done
		err = j.db.Close()
	})
	return err
}

// loop writes the pending marks, all at once, every markFlushInterval
// or as soon as markBatch wait, and prunes periodically, until Close.
func (j *Journal) loop() {
	defer close(j.done)
	flush := time.NewTicker(markFlushInterval)
	defer flush.Stop()
	prune := time.NewTicker(j.opts.PruneInterval)
	defer prune.Stop()
	for {
		select {
		case <-j.wake:
			j.writeMarks(j.takeMarks())
		case <-flush.C:
			j.writeMarks(j.takeMarks())
		case <-prune.C:
			if n, err := j.Prune(time.Now()); err != nil {
				j.opts.Logger.Warn("gateway: journal prune failed", "err", err)
			} else if n > 0 {
				j.opts.Logger.Debug("gateway: journal pruned", "deleted", n)
			}
		case <-j.stop:
			j.writeMarks(j.takeMarks())
			return
		}
	}
}

// writeMarks sets Sent on the entries of batch, in one transaction.
func (j *Journal) writeMarks(batch []string) {
	if len(batch) == 0 {
		return
	}
	if j.beforeMarks != nil {
		j.beforeMarks(len(batch))
	}
	err := j.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(journalBucket)
		for _, id := range batch {
			v := b.Get([]byte(id))
			if v == nil {
				continue
			}
			var e journalEntry
			if _, err := e.UnmarshalMsg(v); err != nil {
				return err
			}
			e.Sent = true
			nv, err := e.MarshalMsg(nil)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(id), nv); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, berrors.ErrDatabaseNotOpen) {
		j.opts.Logger.Warn("gateway: journal mark sent failed", "err", err)
	}
}
