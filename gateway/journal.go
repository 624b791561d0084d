package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
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
	// Logger receives pruning and write failures. Default: discard.
	Logger *slog.Logger
}

// Journal keeps every transaction result in a bbolt file from the moment
// it is known until it has reached Prime and is Retention old, so
// that neither a lost stream nor a gateway restart loses a result or runs
// a transaction twice.
//
// Put is durable when it returns (concurrent Puts share one fsync, through
// bbolt's Batch). MarkSent is asynchronous: a lost mark only keeps an
// entry longer. All methods may be called concurrently.
type Journal struct {
	db   *bolt.DB
	opts JournalOptions

	marks chan string
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// OpenJournal opens (creating if needed) the journal at path and starts
// its background pruning and mark writing. A journal file is locked by
// one process at a time: a second open fails within a second.
func OpenJournal(path string, opts JournalOptions) (*Journal, error) {
	if opts.Retention < 0 || opts.PruneInterval < 0 {
		return nil, configError("journal retention and prune interval", "must not be negative")
	}
	if opts.MaxAge < 0 {
		return nil, configError("journal max age", "must not be negative")
	}
	setDefault(&opts.Retention, 24*time.Hour)
	setDefault(&opts.MaxAge, 7*24*time.Hour)
	opts.MaxAge = max(opts.MaxAge, opts.Retention)
	setDefault(&opts.PruneInterval, min(opts.Retention/10, time.Minute))
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
	j := &Journal{db: db, opts: opts, marks: make(chan string, 4096), stop: make(chan struct{}), done: make(chan struct{})}
	go j.loop()
	return j, nil
}

// Put records res durably.
func (j *Journal) Put(res *TxResult) error {
	return j.put(res, time.Now())
}

func (j *Journal) put(res *TxResult, now time.Time) error {
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
func (j *Journal) Get(id string) (*TxResult, bool, error) {
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
// Retention counts. It does not block for long: marks are written in
// batches in the background.
func (j *Journal) MarkSent(id string) {
	select {
	case j.marks <- id:
	case <-j.stop:
	}
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
		close(j.stop)
		<-j.done
		err = j.db.Close()
	})
	return err
}

// loop writes marks in batches and prunes periodically until Close.
func (j *Journal) loop() {
	defer close(j.done)
	flush := time.NewTicker(50 * time.Millisecond)
	defer flush.Stop()
	prune := time.NewTicker(j.opts.PruneInterval)
	defer prune.Stop()
	var batch []string
	for {
		select {
		case id := <-j.marks:
			batch = append(batch, id)
			if len(batch) >= 1024 {
				batch = j.writeMarks(batch)
			}
		case <-flush.C:
			batch = j.writeMarks(batch)
		case <-prune.C:
			if n, err := j.Prune(time.Now()); err != nil {
				j.opts.Logger.Warn("gateway: journal prune failed", "err", err)
			} else if n > 0 {
				j.opts.Logger.Debug("gateway: journal pruned", "deleted", n)
			}
		case <-j.stop:
			j.writeMarks(append(batch, j.pendingMarks()...))
			return
		}
	}
}

// writeMarks sets Sent on the entries of batch and returns batch emptied.
func (j *Journal) writeMarks(batch []string) []string {
	if len(batch) == 0 {
		return batch
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
	return batch[:0]
}

// pendingMarks returns the marks queued and not yet read.
func (j *Journal) pendingMarks() []string {
	var out []string
	for {
		select {
		case id := <-j.marks:
			out = append(out, id)
		default:
			return out
		}
	}
}
