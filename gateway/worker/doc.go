// Package worker is the worker side of the pipeline: a grid node that runs
// the transactions a gateway sends it and answers their results.
//
//	gateway ──grid [wire.TxRequest]──▶ Worker ──▶ contract.Func
//	                                             ├─ a Go function
//	                                             ├─ ExecContract: a command per transaction
//	                                             └─ ProcessPool: supervised long-lived processes
//
// A Worker serves wire.HandlerInfo (its capacity) and wire.HandlerRun on a
// grid Manager; Start registers them before its node dials or accepts
// anyone, so a gateway's first probe finds them. Drain refuses new
// transactions (the gateway runs them elsewhere) and waits for those
// running: a worker shut down that way runs nothing twice.
//
// ExecContract runs a command per transaction: the transaction JSON on
// stdin, the result JSON on stdout, stderr as logs, in a process group
// killed as a whole at the deadline. StartProcesses runs long-lived
// processes that speak the line protocol of gateway/contract/PROCESS.md,
// several transactions at once each, restarted with backoff when they end,
// break the protocol or stop answering (ProcessConfig.WedgedAfter).
//
// A Worker remembers, by transaction ID, what it runs and what it ran
// recently with its result (Options.RecordRuns, RecordBytes, RecordTTL). A
// run goes on when the session of the gateway that sent it ends (the
// gateway died); the same transaction sent again, by that gateway's
// successor, is joined to its run or answered from the record, so it runs
// once. A run its caller cancels is cancelled; one past its deadline
// (wire.TxRequest.Timeout) is answered with its timeout.
//
// With Options.TracerProvider, each transaction is a worker.transaction
// span, a child of the grid's server span in the handler's context, with
// a contract.run span under it (trace.go); the contract is handed that
// span's W3C trace context (TRACEPARENT for a command, the request line's
// traceparent for a process, contract.TraceParent for a Go function).
//
// Metrics serves the worker's and its pool's counters. A worker imports
// nothing of the gateway's Prime side; the two share only package wire.
//
// Concurrency: every method of Worker, ProcessPool and Metrics may be
// called concurrently. Each type owns the goroutines it starts; a
// ProcessPool's Close stops its processes and waits for them.
package worker
