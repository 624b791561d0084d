package gateway

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/gridmesh/gridmesh/gateway/wire"
)

// TracerName is the instrumentation scope of the gateway's spans.
const TracerName = "github.com/gridmesh/gridmesh/gateway"

// The gateway's spans: one trace per transaction Prime delivers, rooted
// in SpanTransaction, with a child span for each step it goes through,
// one after the other:
//
//	gateway.transaction            receipt → answer sent (or given up)
//	├─ prime.receive               duplicate check, journal lookup
//	├─ gateway.queue_wait          waiting for a worker with room
//	├─ gateway.dispatch            the call(s) to workers, re-dispatches as events
//	│   └─ (grid client span → grid server span → worker.transaction → contract.run, on the worker)
//	├─ gateway.journal_write       the result written to the journal
//	└─ prime.send                  queued for the stream, until Send returned
//
// A transaction answered from the journal has prime.receive and
// prime.send only; a duplicate delivery (the transaction is running or
// was just answered) or one received while shutting down is a trace of
// its own with no child, and a duplicate is linked to the running one,
// which gets a "duplicate delivery" event. Every span ends: a
// transaction left to Prime (shutdown, stream lost before its answer
// went) ends with gridmesh.outcome "handed_back" at the latest when Run
// returns.
const (
	SpanTransaction  = "gateway.transaction"
	SpanReceive      = "prime.receive"
	SpanQueueWait    = "gateway.queue_wait"
	SpanDispatch     = "gateway.dispatch"
	SpanJournalWrite = "gateway.journal_write"
	SpanSend         = "prime.send"
	// SpanContract is a Local runner's contract run (a worker has its
	// own: package worker).
	SpanContract = "contract.run"
)

// Span attributes and events. Transaction IDs are span attributes, never
// metric labels.
const (
	AttrTransactionID = attribute.Key("gridmesh.transaction_id")
	// AttrStream is the number of the Prime stream the request came on.
	AttrStream = attribute.Key("gridmesh.prime.stream")
	// AttrOutcome is what became of a delivery: "answered" (run and its
	// result sent), "from_journal", "duplicate", "ignored" (shutting
	// down), "handed_back" (left to Prime to deliver again).
	AttrOutcome = attribute.Key("gridmesh.outcome")
	// AttrWorker is the worker that answered (on gateway.dispatch; on a
	// re-dispatch event, the one given up on).
	AttrWorker = attribute.Key("gridmesh.worker")
	// AttrAttempts counts the calls gateway.dispatch made.
	AttrAttempts = attribute.Key("gridmesh.dispatch.attempts")
	// AttrReason says why a transaction was re-dispatched.
	AttrReason = attribute.Key("gridmesh.reason")
	// AttrErrorKind is the kind of a contract error (wire.Kinds).
	AttrErrorKind = attribute.Key("gridmesh.contract.error_kind")
	// AttrFromRecord: the worker answered from its record of runs.
	AttrFromRecord = attribute.Key("gridmesh.from_record")

	EventRedispatch = "redispatch"
	EventDuplicate  = "duplicate delivery"
	EventResend     = "stream ended: sent again on the next stream"
)

// Outcomes (AttrOutcome).
const (
	outcomeAnswered    = "answered"
	outcomeFromJournal = "from_journal"
	outcomeDuplicate   = "duplicate"
	outcomeIgnored     = "ignored"
	outcomeHandedBack  = "handed_back"
)

// txState is one transaction in the gateway, from its receipt until it
// was answered or given up: an entry of Gateway.pending. It is used by
// one goroutine at a time, the one the transaction is with (receiver,
// runTx, sender), except root, which never changes and whose span may be
// given events by anyone.
type txState struct {
	start time.Time
	ran   bool            // the transaction was run (not answered from the journal)
	ctx   context.Context // carries root; nil when not traced
	root  trace.Span      // nil when not traced
	step  trace.Span      // the child span open now
}

// newTx starts a transaction received on stream sess now: its root span
// and prime.receive, when the gateway traces.
func (g *Gateway) newTx(id string, sess uint64, now time.Time) *txState {
	tx := &txState{start: now}
	if g.tracer == nil {
		return tx
	}
	tx.ctx, tx.root = g.tracer.Start(context.Background(), SpanTransaction, trace.WithTimestamp(now),
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(AttrTransactionID.String(id), AttrStream.Int64(int64(sess))))
	_, tx.step = g.tracer.Start(tx.ctx, SpanReceive, trace.WithTimestamp(now))
	return tx
}

// next ends tx's open step and starts the step name after it.
func (g *Gateway) next(tx *txState, name string, opts ...trace.SpanStartOption) {
	if tx.root == nil {
		return
	}
	now := time.Now()
	tx.step.End(trace.WithTimestamp(now))
	_, tx.step = g.tracer.Start(tx.ctx, name, append(opts, trace.WithTimestamp(now))...)
}

// stepContext returns ctx carrying tx's open step, for the calls made in
// it.
func stepContext(ctx context.Context, tx *txState) context.Context {
	if tx.root == nil {
		return ctx
	}
	return trace.ContextWithSpan(ctx, tx.step)
}

// stepFailed marks tx's open step failed.
func stepFailed(tx *txState, msg string) {
	if tx.root != nil {
		tx.step.SetStatus(codes.Error, msg)
	}
}

// noteResult marks tx's root with res's contract error, if any.
func noteResult(tx *txState, res *wire.TxResult) {
	if tx.root == nil || res.Error == "" {
		return
	}
	tx.root.SetStatus(codes.Error, res.Error)
	if kind := wire.ErrorKindOf(res); kind != "" {
		tx.root.SetAttributes(AttrErrorKind.String(kind))
	}
}

// finish ends tx's spans with outcome and counts its latency when it was
// run and answered. Whoever removes tx from Gateway.pending calls it.
func (g *Gateway) finish(tx *txState, outcome string) {
	if tx == nil {
		return
	}
	now := time.Now()
	if tx.ran && outcome == outcomeAnswered {
		g.metrics.answered(now.Sub(tx.start))
	}
	if tx.root == nil {
		return
	}
	if outcome == outcomeHandedBack {
		tx.step.SetStatus(codes.Error, "left to Prime to deliver again")
	}
	tx.step.End(trace.WithTimestamp(now))
	tx.root.SetAttributes(AttrOutcome.String(outcome))
	tx.root.End(trace.WithTimestamp(now))
}

// traceDropped records a delivery that is not run (a duplicate, or one
// received while shutting down) as a trace of its own, linked to the
// running transaction, if any, which gets an event.
func (g *Gateway) traceDropped(id string, sess uint64, now time.Time, outcome string, running *txState) {
	if g.tracer == nil {
		return
	}
	opts := []trace.SpanStartOption{trace.WithTimestamp(now), trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(AttrTransactionID.String(id), AttrStream.Int64(int64(sess)), AttrOutcome.String(outcome))}
	if running != nil && running.root != nil {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: running.root.SpanContext()}))
		running.root.AddEvent(EventDuplicate, trace.WithAttributes(AttrStream.Int64(int64(sess))))
	}
	_, span := g.tracer.Start(context.Background(), SpanTransaction, opts...)
	span.End()
}

// noteResend notes on the send span of transaction id that its Send
// failed as the stream ended: it is sent again on the next stream.
func (g *Gateway) noteResend(id string, err error) {
	if g.tracer == nil {
		return
	}
	g.mu.Lock()
	tx := g.pending[id]
	g.mu.Unlock()
	if tx != nil && tx.root != nil {
		tx.step.AddEvent(EventResend, trace.WithAttributes(attribute.String("error", err.Error())))
	}
}
