package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/gridmesh/gridmesh/gateway/wire"
	"github.com/gridmesh/gridmesh/internal/defaults"
	pb "github.com/gridmesh/gridmesh/proto"
)

// DefaultMaxResultBytes is the default of Options.MaxResultBytes: just
// under the 4 MiB a default gRPC server (Prime) accepts in one message.
const DefaultMaxResultBytes = 4<<20 - 64<<10

// MinResultBytes is the least Options.MaxResultBytes: room for the error
// answer that replaces a result over it.
const MinResultBytes = 1 << 10

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
	// TxTimeout is the contract's deadline: a contract still running at
	// it is cancelled by its worker, and Prime is answered with the
	// timeout as the transaction's error. It does not bound the wait for
	// a worker, nor re-dispatches after a worker was lost: those are the
	// grid's unavailability, which is never an answer (the transaction
	// waits, or at shutdown is left to Prime). Default 60 s.
	TxTimeout time.Duration
	// DrainTimeout bounds how long Run waits, at shutdown, for the
	// transactions in flight to finish and their results to be sent.
	// Default 30 s.
	DrainTimeout time.Duration
	// MaxResultBytes bounds one response to Prime as encoded on the wire
	// (result JSON, logs, error and transaction ID). Prime, a default gRPC
	// server, ends the stream on a message over 4 MiB and delivers the
	// transaction again, so a result over the bound is neither journaled
	// nor sent: Prime is answered with an error for that transaction
	// instead (Stats.TooLarge). Default DefaultMaxResultBytes; at least
	// 1024.
	MaxResultBytes int
	// Logger receives the gateway's logs. Default: discard.
	Logger *slog.Logger
	// TracerProvider traces every transaction Prime delivers: a trace per
	// transaction, from its receipt to its answer, with a span for each
	// step (see SpanTransaction). The dispatch span goes with the call to
	// the worker, so that a grid that carries trace context (and a worker
	// that traces) continues the trace there. nil (the default): no
	// spans, at no cost.
	TracerProvider trace.TracerProvider
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
//   - a result whose Send failed because the stream ended (Prime closed
//     it, the connection broke) stays pending and is sent first on the
//     next stream; a redelivery of it meanwhile is not run again;
//   - a result whose Send failed otherwise is left to Prime, which
//     delivers the transaction again on the next stream, and is answered
//     from the journal then;
//   - a result larger than Options.MaxResultBytes is replaced by an error
//     answer before it is journaled;
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

	out     chan *wire.TxResult // results waiting for the stream's sender
	resend  chan *wire.TxResult // a result whose Send failed as its stream ended: sent first on the next one
	waiting atomic.Int64        // results finished and not yet taken by the sender (being journaled, in out, or on their way in)
	room    chan struct{}       // signalled when the sender takes a result: deliver may go on

	tracer  trace.Tracer // nil: no tracing
	metrics *latencyMetrics

	mu       sync.Mutex
	pending  map[string]*txState // running, or result waiting to be sent
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
	handedBack, tooLarge, throttled                     atomic.Uint64
	contractErrors, contractTimeouts                    atomic.Uint64
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
	Failed        uint64 `json:"failed"`         // transactions answered with an error of the gateway's: a result (or transaction) too large for Prime or the grid
	TooLarge      uint64 `json:"too_large"`      // results over max_result_bytes or the grid's message size, answered with an error instead (counted in failed too)

	ContractErrors   uint64 `json:"contract_errors"`   // answers carrying the contract's own error (timeouts not included)
	ContractTimeouts uint64 `json:"contract_timeouts"` // answers for a contract that ran past transaction_timeout
	Throttled        uint64 `json:"throttled"`         // times reading from Prime paused because too many results waited to be sent (Prime not reading)
	HandedBack       uint64 `json:"handed_back"`       // transactions given up at shutdown, left to Prime to redeliver
	Streams          uint64 `json:"streams"`           // streams opened
	Connected        bool   `json:"connected"`         // a stream to Prime is up
	InFlight         int    `json:"in_flight"`         // transactions running or waiting to be sent

	// TxLatency summarises the latency, receipt to answer, of the
	// transactions run and answered.
	TxLatency LatencySummary `json:"tx_latency"`
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
	if err := checkMaxResultBytes("Options.MaxResultBytes", opts.MaxResultBytes); err != nil {
		return nil, err
	}
	defaults.Set(&opts.TxTimeout, time.Minute)
	defaults.Set(&opts.DrainTimeout, 30*time.Second)
	defaults.Set(&opts.MaxResultBytes, DefaultMaxResultBytes)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Prime.MethodPath == "" {
		opts.Prime.MethodPath = pb.DefaultRunMethod
	}
	g := &Gateway{
		opts:    opts,
		log:     opts.Logger,
		runner:  opts.Runner,
		j:       opts.Journal,
		metrics: newLatencyMetrics(),
		out:     make(chan *wire.TxResult, maxWaiting),
		resend:  make(chan *wire.TxResult, 1),
		room:    make(chan struct{}, 1),
		pending: make(map[string]*txState),
		sentOn:  newRecentSet(1 << 16),
		drained: make(chan struct{}),
		abort:   make(chan struct{}),
	}
	if opts.TracerProvider != nil {
		g.tracer = opts.TracerProvider.Tracer(TracerName)
	}
	return g, nil
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
		TooLarge: c.tooLarge.Load(), Throttled: c.throttled.Load(),
		ContractErrors: c.contractErrors.Load(), ContractTimeouts: c.contractTimeouts.Load(),
		Streams: g.streams.Load(), Connected: g.live.Load(), InFlight: int(g.unsent.Load()),
		MarksPending: js.MarksPending, MarksDropped: js.MarksDropped,
		TxLatency: g.metrics.summary(),
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
	g.handBack()
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
		// transactions still running (those not queued to be sent).
		if n == 0 || (!g.live.Load() && int(n) <= len(g.out)+len(g.resend)) {
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

// maxWaiting is how many finished results may wait for the sender before
// the gateway stops reading from Prime (the capacity of Gateway.out).
const maxWaiting = 1024

// deliver takes one request from Prime on stream number sess. It returns
// when the transaction is started, answered from the journal, or dropped;
// it blocks while the runner has no free capacity, and while maxWaiting
// results wait to be sent (Prime not reading them), so that gRPC flow
// control holds the backlog at Prime.
func (g *Gateway) deliver(ctx context.Context, req *pb.SmartContractRequest, sess uint64) {
	now := time.Now()
	g.counters.received.Add(1)
	id := req.GetTransactionId()
	g.mu.Lock()
	switch running, inFlight := g.pending[id]; {
	case g.draining:
		g.mu.Unlock()
		g.counters.ignored.Add(1)
		g.traceDropped(id, sess, now, outcomeIgnored, nil)
		return
	case inFlight, g.sentOn.get(id) == sess:
		g.mu.Unlock()
		g.counters.duplicates.Add(1)
		g.log.Debug("gateway: duplicate transaction not run again", "transaction_id", id)
		g.traceDropped(id, sess, now, outcomeDuplicate, running)
		return
	}
	tx := g.newTx(id, sess, now)
	g.pending[id] = tx
	g.unsent.Add(1)
	g.mu.Unlock()

	res, found, err := g.j.Get(id)
	if err != nil {
		g.log.Error("gateway: journal read failed; running the transaction", "transaction_id", id, "err", err)
	}
	if found {
		g.counters.fromJournal.Add(1)
		// A result journaled by a gateway with a larger bound (or none).
		g.waiting.Add(1)
		res = g.bound(res)
		noteResult(tx, res)
		g.next(tx, SpanSend, trace.WithSpanKind(trace.SpanKindProducer))
		if !g.enqueue(res, ctx.Done()) {
			g.unpend(id)
		}
		return
	}
	g.next(tx, SpanQueueWait)
	if err := g.waitRoom(ctx); err != nil {
		g.unpend(id)
		return
	}
	s, err := g.runner.reserve(ctx, id)
	if err != nil { // the stream ended, or shutdown: Prime delivers it again
		g.unpend(id)
		return
	}
	g.metrics.queue.ObserveDuration(time.Since(now))
	g.counters.started.Add(1)
	g.txWG.Add(1)
	go g.runTx(s, tx, &wire.TxRequest{ID: id, JSON: req.GetTransactionJson(), EnvVars: req.GetEnvVars(), Secrets: req.GetSecrets()})
}

// runTx runs one transaction, journals its result and queues it for
// sending. The transaction has a result, or is given up at shutdown and
// left to Prime: the gateway's or the grid's unavailability is never an
// answer, so the runner keeps trying until one of the two.
func (g *Gateway) runTx(s slot, tx *txState, req *wire.TxRequest) {
	defer g.txWG.Done()
	req.Timeout = int64(g.opts.TxTimeout)
	tx.ran = true
	g.next(tx, SpanDispatch)
	res, err := g.runner.run(stepContext(g.hard, tx), s, req)
	switch {
	case errors.Is(err, ErrTooLarge):
		g.counters.tooLarge.Add(1)
		g.counters.failed.Add(1)
		g.log.Warn("gateway: transaction or result too large for the grid; answered with an error", "transaction_id", req.ID, "err", err)
		stepFailed(tx, err.Error())
		res = &wire.TxResult{ID: req.ID, Error: err.Error()}
	case err != nil:
		g.counters.handedBack.Add(1)
		g.unpend(req.ID)
		return
	}
	// The slot is free again: from here until the sender takes it, the
	// result counts against maxWaiting, journaling included.
	g.waiting.Add(1)
	switch {
	case res.TimedOut:
		g.counters.contractTimeouts.Add(1)
	case res.Error != "":
		g.counters.contractErrors.Add(1)
	}
	res.ID = req.ID
	res = g.bound(res)
	noteResult(tx, res)
	g.next(tx, SpanJournalWrite)
	if err := g.j.Put(res); err != nil {
		// Prime delivers a transaction again only on a new stream, so a
		// result held back would leave it unanswered for as long as this
		// stream lasts. Send it: Prime still gets one answer; only a
		// redelivery (a crash before it arrives) would run it again.
		g.counters.journalErrors.Add(1)
		g.log.Error("gateway: cannot journal result; sending it anyway (a redelivery would run it again)", "transaction_id", req.ID, "err", err)
		stepFailed(tx, err.Error())
	} else {
		g.counters.journaled.Add(1)
	}
	g.next(tx, SpanSend, trace.WithSpanKind(trace.SpanKindProducer))
	if !g.enqueue(res, g.hard.Done()) {
		g.counters.handedBack.Add(1) // journaled: answered from there on redelivery
		g.unpend(req.ID)
	}
}

// enqueue queues res, already counted in waiting, for the sender. It
// gives up when done is closed, even if the sender could take it, and
// reports whether res was queued.
func (g *Gateway) enqueue(res *wire.TxResult, done <-chan struct{}) bool {
	select {
	case <-done:
		g.dequeued()
		return false
	default:
	}
	select {
	case g.out <- res:
		return true
	case <-done:
		g.dequeued()
		return false
	}
}

// dequeued counts a result the sender took (or that gave up waiting) and
// wakes deliver if it waits for room.
func (g *Gateway) dequeued() {
	g.waiting.Add(-1)
	select {
	case g.room <- struct{}{}:
	default:
	}
}

// waitRoom waits until fewer than maxWaiting results wait for the sender,
// or ctx ends. The receive loop calls it before it starts a transaction:
// a worker slot is given back as soon as its result is in, so without it
// a Prime that stops reading responses would have the gateway read and
// run transactions on and on, their results piling up in memory.
func (g *Gateway) waitRoom(ctx context.Context) error {
	if g.waiting.Load() < maxWaiting {
		return nil
	}
	g.counters.throttled.Add(1)
	g.log.Debug("gateway: results wait to be sent; not reading from Prime", "waiting", g.waiting.Load())
	for g.waiting.Load() >= maxWaiting {
		select {
		case <-g.room:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// response is res as sent to Prime.
func response(res *wire.TxResult) *pb.SmartContractResponse {
	return &pb.SmartContractResponse{
		TransactionId: res.ID, ResultJson: res.ResultJSON, OutputToChain: res.OutputToChain,
		Logs: res.Logs, Error: res.Error,
	}
}

// bound returns res, or in its place an error answer when res encodes
// larger than MaxResultBytes: Prime would end the stream on it, and
// deliver it again, and again.
func (g *Gateway) bound(res *wire.TxResult) *wire.TxResult {
	n := proto.Size(response(res))
	if n <= g.opts.MaxResultBytes {
		return res
	}
	g.counters.tooLarge.Add(1)
	g.counters.failed.Add(1)
	msg := fmt.Sprintf("gateway: result too large: %d bytes encoded (result_json %d, logs %d, error %d), max_result_bytes is %d",
		n, len(res.ResultJSON), len(res.Logs), len(res.Error), g.opts.MaxResultBytes)
	g.log.Warn("gateway: result too large; answering with an error", "transaction_id", res.ID,
		"bytes", n, "max_result_bytes", g.opts.MaxResultBytes)
	return &wire.TxResult{ID: res.ID, Error: msg}
}

// unpend forgets a transaction that was not answered: Prime delivers it
// again.
func (g *Gateway) unpend(id string) {
	g.mu.Lock()
	tx := g.pending[id]
	delete(g.pending, id)
	g.mu.Unlock()
	g.unsent.Add(-1)
	g.finish(tx, outcomeHandedBack)
}

// handBack ends the transactions still pending when Run returns, their
// results unsent for want of a stream: Prime delivers them again.
func (g *Gateway) handBack() {
	g.mu.Lock()
	left := g.pending
	g.pending = make(map[string]*txState)
	g.mu.Unlock()
	for _, tx := range left {
		g.finish(tx, outcomeHandedBack)
	}
}

// sentOK records that res went out on stream number sess.
func (g *Gateway) sentOK(res *wire.TxResult, sess uint64) {
	g.mu.Lock()
	tx := g.pending[res.ID]
	delete(g.pending, res.ID)
	g.sentOn.put(res.ID, sess)
	g.mu.Unlock()
	g.unsent.Add(-1)
	g.counters.sent.Add(1)
	g.j.MarkSent(res.ID)
	outcome := outcomeFromJournal
	if tx != nil && tx.ran {
		outcome = outcomeAnswered
	}
	g.finish(tx, outcome)
}

// recentSet remembers the last n transaction IDs sent and the stream
// each went out on, to drop a redelivery that crossed our answer on the
// same stream.
type recentSet struct {
	m    map[string]recentEntry
	ring []string
	next int
}

// recentEntry is an ID's stream and the ring slot it was last put in.
type recentEntry struct {
	sess uint64
	slot int
}

func newRecentSet(n int) recentSet {
	return recentSet{m: make(map[string]recentEntry, n), ring: make([]string, n)}
}

func (r *recentSet) get(id string) uint64 { return r.m[id].sess }

func (r *recentSet) put(id string, sess uint64) {
	// The slot's ID is forgotten only if no later slot holds it (an ID
	// sent again on a later stream is in the ring twice).
	if old := r.ring[r.next]; old != "" && r.m[old].slot == r.next {
		delete(r.m, old)
	}
	r.ring[r.next] = id
	r.m[id] = recentEntry{sess: sess, slot: r.next}
	r.next = (r.next + 1) % len(r.ring)
}
