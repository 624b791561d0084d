package worker

import (
	"context"
	"errors"
	"time"

	"github.com/gridmesh/gridmesh/gateway/wire"
	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

// Why a run's contract context ends early (context.Cause).
var (
	errCallerGone = errors.New("worker: the gateway cancelled the transaction")
	errClosing    = errors.New("worker: closing")
)

// runTraced is wire.HandlerRun: run, inside the worker's span when it
// traces.
func (w *Worker) runTraced(ctx context.Context, req *wire.TxRequest) (*wire.TxResult, error) {
	return w.traced(ctx, req, w.run)
}

// run runs req, or joins its run, or answers it from the record.
func (w *Worker) run(ctx context.Context, req *wire.TxRequest) (*wire.TxResult, error) {
	rn, fresh := w.rec.start(req.ID)
	if !fresh {
		return w.join(ctx, rn, req)
	}
	if !w.take() {
		w.refused.Add(1)
		setOutcome(ctx, outcomeRefused)
		res := &wire.TxResult{ID: req.ID, Draining: true, Error: wire.ErrDraining.Error() + ": transaction not run"}
		w.rec.forget(rn, res)
		return res, nil
	}
	defer w.leave()
	select {
	case w.sem <- struct{}{}:
	case <-ctx.Done():
		setOutcome(ctx, outcomeCancelled)
		w.rec.forget(rn, &wire.TxResult{ID: req.ID, Draining: true, Error: "worker: not run: " + ctx.Err().Error()})
		return nil, ctx.Err()
	case <-w.base.Done():
		return w.giveUp(ctx, rn, req.ID), nil
	}
	defer func() { <-w.sem }()
	if w.closed() {
		// Close came while the call waited for a slot, and select took
		// the slot at random: a closed worker starts no contract.
		return w.giveUp(ctx, rn, req.ID), nil
	}
	return w.runContract(ctx, rn, req)
}

// giveUp answers a transaction the worker did not start because it
// closed, and drops its run from the record.
func (w *Worker) giveUp(ctx context.Context, rn *run, id string) *wire.TxResult {
	setOutcome(ctx, outcomeGivenUp)
	res := w.givenUp(id)
	w.rec.forget(rn, res)
	return res
}

// runContract runs req's contract on a context of its own: it ends at the
// contract's deadline, when the caller cancels the call, or at Close, but
// not when the call's session ends, so that a gateway's death does not
// cut a run short; its result is recorded for the gateway's successor.
func (w *Worker) runContract(ctx context.Context, rn *run, req *wire.TxRequest) (*wire.TxResult, error) {
	runCtx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	stopCaller := context.AfterFunc(ctx, func() {
		if !mux.SessionEnded(ctx) {
			cancel(errCallerGone)
		}
	})
	defer stopCaller()
	stopClose := context.AfterFunc(w.base, func() { cancel(errClosing) })
	defer stopClose()

	spanCtx, span := w.startContractSpan(runCtx, rn)
	res, err := wire.RunContract(spanCtx, w.opts.Contract, req)
	processKind(res, err)
	w.endContractSpan(span, res)
	switch cause := context.Cause(runCtx); {
	case errors.Is(cause, errClosing):
		setOutcome(ctx, outcomeGivenUp)
		res = w.givenUp(req.ID)
		res.Abandoned = true
		w.rec.forget(rn, res)
		return res, nil
	case errors.Is(cause, errCallerGone):
		// The gateway gave the transaction up (it shuts down, or gave up
		// on this worker) and may send it again: what the cancelled run
		// produced is no answer, for it or for a call joined to it.
		setOutcome(ctx, outcomeCancelled)
		w.rec.forget(rn, nil)
		return nil, ctx.Err()
	}
	setOutcome(ctx, outcomeRan)
	w.done.Add(1)
	w.count(res)
	w.rec.finish(rn, res, time.Now())
	return res, nil
}

// join waits for rn, the run of a transaction sent before, and answers
// its result. A run that ended without a result to keep (it was refused,
// cancelled by its caller or given up at Close) is no answer: the
// transaction is run afresh (run refuses it if the worker drains or
// closes).
func (w *Worker) join(ctx context.Context, rn *run, req *wire.TxRequest) (*wire.TxResult, error) {
	waited := false
	select {
	case <-rn.done:
	default:
		waited = true
		select {
		case <-rn.done:
		case <-ctx.Done():
			setOutcome(ctx, outcomeCancelled)
			return nil, ctx.Err()
		}
	}
	if rn.res == nil || rn.res.Draining {
		return w.run(ctx, req)
	}
	linkRun(ctx, rn)
	if waited {
		setOutcome(ctx, outcomeJoined)
	} else {
		setOutcome(ctx, outcomeFromRecord)
	}
	w.fromRecord.Add(1)
	res := *rn.res
	res.FromRecord, res.Duration = true, 0
	return &res, nil
}

// givenUp is the answer of a run Close gave up: not a result, so the
// gateway runs it elsewhere.
func (w *Worker) givenUp(id string) *wire.TxResult {
	return &wire.TxResult{ID: id, Draining: true, Error: wire.ErrDraining.Error() + ": worker closed before the transaction finished"}
}

// count counts a result's contract error or timeout, and logs it
// (failLog).
func (w *Worker) count(res *wire.TxResult) {
	switch {
	case res.TimedOut:
		w.contractTimeouts.Add(1)
	case res.Error != "":
		w.contractErrors.Add(1)
	default:
		return
	}
	w.failLog.log(w.opts.Logger, res, time.Now())
}

// recent is wire.HandlerRecent: the IDs of the runs the record holds.
func (w *Worker) recent(context.Context, *handlers.NoPayload) (*wire.Recent, error) {
	return &wire.Recent{IDs: w.rec.ids(time.Now())}, nil
}
