// Package gateway is the Prime side of the pipeline: it holds Dragonchain
// Prime's smart-contract stream and runs each transaction on the workers
// of a grid, sending every result back once.
//
//	Prime ──gRPC Run──▶ Gateway ─▶ Dispatcher ──grid──▶ worker (package worker)
//	      ◀── results ── Gateway ◀─ Journal ◀──────────── wire.TxResult
//
// The parts, in the order a transaction meets them:
//
//   - Gateway (gateway.go, prime.go) keeps Prime's client contract, as
//     Prime's Go template does: one bidirectional Run stream with the
//     x-api-key, x-smart-contract-id and x-chain-id metadata, keepalive
//     10 s / 3 s, reconnects with backoff min(max, base·2^n) + jitter, a
//     Send error tears the stream down, graceful drain on Run's context.
//   - Dispatcher (dispatch.go) finds the workers among the Manager's peers
//     from the grid's state changes and sends each transaction to the one
//     with most free capacity; when all are full the gateway stops reading
//     from Prime, so gRPC flow control holds the backlog at Prime. A
//     transaction whose worker was lost mid-call goes back to it if it
//     returns within HomeWait, else to another. It
//     follows the Manager's membership (grid.Manager.SetHosts): a worker
//     that joins is asked for its capacity as soon as it connects, and
//     one that leaves gets nothing new while what it runs finishes. Local
//     (runner.go) runs a contract in this process instead, with no grid.
//   - Journal (journal.go) keeps every result, in bbolt, until it was sent
//     and Retention has passed; a transaction Prime delivers again whose
//     result is known is answered from it, across restarts.
//   - Metrics (metrics.go) serves the gateway's and the dispatcher's
//     counters and latency histograms (latency.go, workermetrics.go:
//     receipt to answer, queue wait, per worker contract duration and
//     errors by kind) as Prometheus text and JSON.
//   - Tracing (trace.go), with Options.TracerProvider: one OpenTelemetry
//     trace per transaction, a span per step from Prime's receipt to the
//     send of the answer; the dispatch span rides with the grid call, so
//     the worker's spans join the trace.
//
// Prime delivers at least once; the gateway answers once as far as it can
// tell: it does not run a transaction_id again while it runs or its result
// waits to be sent, and journals every result before sending it.
//
// Prime treats an answer as final, so only three are errors: the
// contract's own error, the contract running past Options.TxTimeout (its
// worker cancels it and says so), and a result larger than
// Options.MaxResultBytes. The gateway's or the grid's unavailability is
// never an answer: a transaction without a worker waits for one (reading
// from Prime pauses meanwhile), one whose worker was lost is sent to
// another, and at shutdown one still waiting is left to Prime to deliver
// again.
//
// A transaction runs once when only the gateway dies: workers keep running
// what they run when their gateway's session ends, and remember by
// transaction_id what they run and ran (package worker). A new Dispatcher
// learns those IDs from each worker before it counts it as up, and starts
// no transaction until every peer was asked or SettleTimeout passed; the
// transactions Prime delivers again go to the worker that remembers them,
// which joins them to their run or answers them from its record. So does
// a transaction whose worker's connection was lost mid-call: it waits up
// to DispatcherOptions.HomeWait (5 s) for that worker to come back before
// it goes to another. What can still run twice is a transaction whose
// worker died, or stayed cut off past HomeWait, mid-run: Dispatcher.Rerun
// counts those. What a kill -9 leaves behind is
// tested case by case in cmd/gridmesh.
//
// Concurrency: Gateway.Run is called once; Stats, Abort and every method of
// Dispatcher, Journal and Metrics may be called concurrently. Each type
// owns the goroutines it starts, and its Close (Run's return, for a
// Gateway) waits for them.
package gateway
