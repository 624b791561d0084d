package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gridmesh/gridmesh/internal/defaults"
	pb "github.com/gridmesh/gridmesh/proto"
)

// Options configure a Gateway.
type Options struct {
	// Prime is the Prime client's configuration. Required fields are
	// checked by New.
	Prime PrimeConfig
	// Runner runs the transactions: NewDispatcher for grid workers,
	// NewLocal for a function in this process. Required.
	Runner Runner
	// Journal keeps results until Prime has them. Required.
	Journal *Journal
	// TxTimeout bounds one transaction, re-dispatches included; when it
	// passes, Prime is answered with an error. Default 60 s.
	TxTimeout time.Duration
	// DrainTimeout bounds how long Run waits, at shutdown, for the
	// transactions in flight to finish and their results to be sent.
	// Default 30 s.
	DrainTimeout time.Duration
	// Logger receives the gateway's logs. Default: discard.
	Logger *slog.Logger
}

// Gateway holds Prime's smart-contract stream, runs each transaction it
// delivers through a Runner, and sends the results back, each exactly
// once as far as the gateway can tell:
//
//   - a transaction_id that arrives while it is running, or while its
//     result waits to be sent, is not run again;
//   - every result is written to the Journal before it is sent; a
//     transaction Prime delivers again whose result is in the journal is
//     answered from the journal;
//   - a result whose Send failed is left to Prime, which delivers the
//     transaction again on the next stream, and is answered from the
//     journal then;
//   - a result the journal fails to write is sent all the same (Prime
//     redelivers only on a new stream, so holding it back would leave the
//     transaction unanswered meanwhile); a redelivery of it would run it
//     again, and it would still be answered once.
//
// Create it with New and call Run once. Stats and Abort may be called
// concurrently with Run.
type Gateway struct {
	opts   Options
	log    *slog.Logger
	runner Runner
	j      *Journal

	out chan *TxResult // results waiting for the stream's sender

	mu       sync.Mutex
	pending  map[string]struct{} // running, or result waiting to be sent
	sentOn   recentSet           // recently sent: transaction ID → stream number
	draining bool

	unsent  atomic.Int64 // pending entries: drain waits for 0
	live    atomic.Bool  // a stream is up
	streams atomic.Uint64

	hard     context.Context // cancelled when Run gives up on transactions in flight
	accept   context.Context // cancelled when Run stops taking transactions
	drained  chan struct{}   // closed when the drain is over: the sender half-closes
	abort    chan struct{}   // closed by Abort: Run shuts down at once
	abortOne sync.Once
	runOnce  sync.Once
	txWG     sync.WaitGroup
	counters counters
}

type counters struct {
	received, started, fromJournal, duplicates, ignored atomic.Uint64
	journaled, journalErrors, sent, sendErrors, failed  atomic.Uint64
	handedBack                                          atomic.Uint64
}

// Stats counts what a Gateway did.
type Stats struct {
	Received      uint64 `json:"received"`       // requests received from Prime
	Started       uint64 `json:"started"`        // transactions handed to the Runner
	FromJournal   uint64 `json:"from_journal"`   // requests answered from the journal
	Duplicates    uint64 `json:"duplicates"`     // requests not run: in flight, or just answered on the same stream
	Ignored       uint64 `json:"ignored"`        // requests received while shutting down (Prime redelivers them)
	Journaled     uint64 `json:"journaled"`      // results written to the journal
	JournalErrors uint64 `json:"journal_errors"` // results the journal failed to write (sent all the same)
	MarksPending  int    `json:"marks_pending"`  // "sent" marks waiting for the journal's disk
	MarksDropped  uint64 `json:"marks_dropped"`  // "sent" marks dropped, the journal's disk too far behind (kept until journal_max_age)
	Sent          uint64 `json:"sent"`           // responses sent
	SendErrors    uint64 `json:"send_errors"`    // failed Sends (each tore its stream down)
	Failed        uint64 `json:"failed"`         // transactions answered with a gateway error (timeout, no worker)
	HandedBack    uint64 `json:"handed_back"`    // transactions given up at shutdown, left to Prime to redeliver
	Streams       uint64 `json:"streams"`        // streams opened
	Connected     bool   `json:"connected"`      // a stream to Prime is up
	InFlight      int    `json:"in_flight"`      // transactions running or waiting to be sent
}

// New checks opts and returns a Gateway.
func New(opts Options) (*Gateway, error) {
	if err := opts.Prime.Validate(); err != nil {
		return nil, err
	}
	if opts.Runner == nil {
		return nil, configError("Options.Runner", "is required")
	}
	if opts.Journal == nil {
		return nil, configError("Options.Journal", "is required")
	}
	if opts.TxTimeout < 0 || opts.DrainTimeout < 0 {
		return nil, configError("Options.TxTimeout, Options.DrainTimeout", "must not be negative")
	}
	defaults.Set(&opts.TxTimeout, time.Minute)
	defaults.Set(&opts.DrainTimeout, 30*time.Second)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Prime.MethodPath == "" {
		opts.Prime.MethodPath = pb.DefaultRunMethod
	}
	return &Gateway{
		opts:    opts,
		log:     opts.Logger,
		runner:  opts.Runner,
		j:       opts.Journal,
		out:     make(chan *TxResult, 1024),
		pending: make(map[string]struct{}),
		sentOn:  newRecentSet(1 << 16),
		drained: make(chan struct{}),
		abort:   make(chan struct{}),
	}, nil
}

// Stats returns the gateway's counters.
func (g *Gateway) Stats() Stats {
	c := &g.counters
	js := g.j.Stats()
	return Stats{
		Received: c.received.Load(), Started: c.started.Load(), FromJournal: c.fromJournal.Load(),
		Duplicates: c.duplicates.Load(), Ignored: c.ignored.Load(), Journaled: c.journaled.Load(),
		JournalErrors: c.journalErrors.Load(), Sent: c.sent.Load(),
		SendErrors: c.sendErrors.Load(), Failed: c.failed.Load(), HandedBack: c.handedBack.Load(),
		Streams: g.streams.Load(), Connected: g.live.Load(), InFlight: int(g.unsent.Load()),
		MarksPending: js.MarksPending, MarksDropped: js.MarksDropped,
	}
}

// Run holds the Prime stream, reconnecting with backoff, until ctx ends
// (then it shuts down gracefully: it stops taking transactions, waits up
// to DrainTimeout for those in flight and sends their results, half-closes
// the stream and returns nil) or until max_reconnect_attempts is reached
// (ErrMaxReconnects). Transactions still running when it returns are
// cancelled and left to Prime to deliver again. Abort cuts the shutdown
// short. Run may be called once.
func (g *Gateway) Run(ctx context.Context) error {
	err := errors.New("gateway: Run called twice")
	g.runOnce.Do(func() { err = g.run(ctx) })
	return err
}

func (g *Gateway) run(ctx context.Context) error {
	base := context.WithoutCancel(ctx)
	hard, hardCancel := context.WithCancel(base)
	defer hardCancel()
	accept, acceptCancel := context.WithCancel(base)
	defer acceptCancel()
	primeCtx, primeCancel := context.WithCancel(base)
	defer primeCancel()
	g.hard, g.accept = hard, accept

	loopDone := make(chan error, 1)
	go func() { loopDone <- g.primeLoop(primeCtx) }()
	var loopErr error
	select {
	case <-ctx.Done():
		g.log.Info("gateway: shutting down: no new transactions", "in_flight", g.unsent.Load())
	case <-g.abort:
	case loopErr = <-loopDone:
		loopDone = nil
	}

	g.mu.Lock()
	g.draining = true
	g.mu.Unlock()
	acceptCancel()
	g.drain()
	close(g.drained) // the sender half-closes; Prime ends the stream
	if loopDone != nil {
		t := time.NewTimer(closeGrace)
		select {
		case loopErr = <-loopDone:
		case <-t.C:
			primeCancel()
			loopErr = <-loopDone
		case <-g.abort:
			primeCancel()
			loopErr = <-loopDone
		}
		t.Stop()
	}
	hardCancel()
	g.txWG.Wait()
	st := g.Stats()
	g.log.Info("gateway: stopped", "sent", st.Sent, "handed_back", st.HandedBack, "from_journal", st.FromJournal)
	return loopErr
}

// closeGrace bounds the wait for Prime to end the stream after the
// gateway half-closed it.
const closeGrace = 3 * time.Second

// Abort makes Run shut down at once, or cuts short the graceful shutdown
// under way (the gridmesh command calls it at a second signal): Run stops
// waiting for the transactions in flight and for Prime to end the stream,
// cancels the transactions still running (their workers' contracts are
// cancelled too) and returns. What was not answered is left to Prime to
// deliver again; results already journaled are answered from the journal
// then. Abort before Run makes Run return at once. It is idempotent.
func (g *Gateway) Abort() {
	g.abortOne.Do(func() {
		g.log.Warn("gateway: aborting: transactions in flight left to Prime to redeliver", "in_flight", g.unsent.Load())
		close(g.abort)
	})
}

// drainStep is the pause between drain's looks at the transactions.
const drainStep = 5 * time.Millisecond

// drain waits, up to DrainTimeout or until Abort, until no transaction
// is running and every result has been sent (or no stream is up to send
// it on).
func (g *Gateway) drain() {
	deadline := time.NewTimer(g.opts.DrainTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(drainStep)
	defer tick.Stop()
	for {
		n := g.unsent.Load()
		// Without a stream, results cannot go out: wait only for the
		// transactions still running (those not queued in out).
		if n == 0 || (!g.live.Load() && int(n) <= len(g.out)) {
			return
		}
		select {
		case <-tick.C:
		case <-g.abort:
			return
		case <-deadline.C:
			g.log.Warn("gateway: drain timeout: transactions left to Prime to redeliver", "in_flight", g.unsent.Load())
			return
		}
	}
}

// deliver takes one request from Prime on stream number sess. It returns
// when the transaction is started, answered from the journal, or dropped;
// it blocks while the runner has no free capacity.
func (g *Gateway) deliver(ctx context.Context, req *pb.SmartContractRequest, sess uint64) {
	g.counters.received.Add(1)
	id := req.GetTransactionId()
	g.mu.Lock()
	switch _, inFlight := g.pending[id]; {
	case g.draining:
		g.mu.Unlock()
		g.counters.ignored.Add(1)
		return
	case inFlight, g.sentOn.get(id) == sess:
		g.mu.Unlock()
		g.counters.duplicates.Add(1)
		g.log.Debug("gateway: duplicate transaction not run again", "transaction_id", id)
		return
	}
	g.pending[id] = struct{}{}
	g.unsent.Add(1)
	g.mu.Unlock()

	res, found, err := g.j.Get(id)
	if err != nil {
		g.log.Error("gateway: journal read failed; running the transaction", "transaction_id", id, "err", err)
	}
	if found {
		g.counters.fromJournal.Add(1)
		select {
		case g.out <- res:
		case <-ctx.Done():
			g.unpend(id)
		}
		return
	}
	s, err := g.runner.reserve(ctx)
	if err != nil { // the stream ended, or shutdown: Prime delivers it again
		g.unpend(id)
		return
	}
	g.counters.started.Add(1)
	g.txWG.Add(1)
	go g.runTx(s, &TxRequest{ID: id, JSON: req.GetTransactionJson(), EnvVars: req.GetEnvVars(), Secrets: req.GetSecrets()})
}

// runTx runs one transaction, journals its result and queues it for
// sending.
func (g *Gateway) runTx(s slot, req *TxRequest) {
	defer g.txWG.Done()
	ctx, cancel := context.WithTimeout(g.hard, g.opts.TxTimeout)
	res, err := g.runner.run(ctx, s, req)
	cancel()
	if err != nil {
		if g.hard.Err() != nil {
			g.counters.handedBack.Add(1)
			g.unpend(req.ID)
			return
		}
		msg := err.Error()
		if errors.Is(err, context.DeadlineExceeded) {
			msg = fmt.Sprintf("transaction timed out after %v: %v", g.opts.TxTimeout, err)
		}
		g.counters.failed.Add(1)
		g.log.Warn("gateway: transaction failed", "transaction_id", req.ID, "err", msg)
		res = &TxResult{Error: "gateway: " + msg}
	}
	res.ID = req.ID
	if err := g.j.Put(res); err != nil {
		// Prime delivers a transaction again only on a new stream, so a
		// result held back would leave it unanswered for as long as this
		// stream lasts. Send it: Prime still gets one answer; only a
		// redelivery (a crash before it arrives) would run it again.
		g.counters.journalErrors.Add(1)
		g.log.Error("gateway: cannot journal result; sending it anyway (a redelivery would run it again)", "transaction_id", req.ID, "err", err)
	} else {
		g.counters.journaled.Add(1)
	}
	select {
	case g.out <- res:
	case <-g.hard.Done():
		g.counters.handedBack.Add(1) // journaled: answered from there on redelivery
		g.unpend(req.ID)
	}
}

// unpend forgets a transaction that was not answered.
func (g *Gateway) unpend(id string) {
	g.mu.Lock()
	delete(g.pending, id)
	g.mu.Unlock()
	g.unsent.Add(-1)
}

// sentOK records that res went out on stream number sess.
func (g *Gateway) sentOK(res *TxResult, sess uint64) {
	g.mu.Lock()
	delete(g.pending, res.ID)
	g.sentOn.put(res.ID, sess)
	g.mu.Unlock()
	g.unsent.Add(-1)
	g.counters.sent.Add(1)
	g.j.MarkSent(res.ID)
}

// recentSet remembers the last n transaction IDs sent and the stream
// each went out on, to drop a redelivery that crossed our answer on the
// same stream.
type recentSet struct {
	m    map[string]uint64
	ring []string
	next int
}

func newRecentSet(n int) recentSet {
	return recentSet{m: make(map[string]uint64, n), ring: make([]string, n)}
}

func (r *recentSet) get(id string) uint64 { return r.m[id] }

func (r *recentSet) put(id string, sess uint64) {
	if old := r.ring[r.next]; old != "" && old != id {
		delete(r.m, old)
	}
	r.ring[r.next] = id
	r.m[id] = sess
	r.next = (r.next + 1) % len(r.ring)
}
