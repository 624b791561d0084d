// Package gateway connects Dragonchain Prime's smart-contract stream to
// worker nodes of a gridmesh grid, losing no transaction and answering
// each one once.
//
//	Prime ──gRPC Run stream──▶ Gateway ──grid (WebSocket)──▶ Workers
//	      ◀── responses ─────── Gateway ◀── results ─────────
//
// # Prime side
//
// A Gateway keeps the Prime client's contract, as Prime's Go client
// template does: one bidirectional Run stream (the full method path is
// configurable, PrimeConfig.MethodPath), opened with the x-api-key,
// x-smart-contract-id and x-chain-id metadata; gRPC keepalive pings every
// 10 s with a 3 s timeout, also without a stream, so a half-open
// connection is noticed within about 13 s; reconnects after any failure
// with backoff min(max, base·2^n) plus a jitter in [0, base), n starting
// over after a stream that stayed up 60 s; one sender goroutine, whose
// Send error tears the stream down (a result whose Send failed because
// the stream had ended is sent first on the next stream, and the stream's
// end is logged with Prime's status, not the Send's io.EOF); optional
// TLS. A stream Prime refuses (a missing chain ID, a wrong API key) is
// logged with the reason and a hint, then retried. When Run's context
// ends (SIGINT, SIGTERM in the command), the gateway takes no new
// transactions, waits up to DrainTimeout for those running and sends
// their results, half-closes the stream and returns; whatever is left is
// delivered again by Prime to the next gateway. Gateway.Abort (a second
// signal in the command) cuts the wait short and cancels what still runs.
//
// # Grid side
//
// A Dispatcher finds the workers among its grid Manager's peers (each
// answers HandlerInfo with its capacity) and sends every transaction to
// the connected worker with the lowest load relative to its capacity. It
// learns of workers connecting, leaving and reconnecting from the grid's
// state changes (grid.Connection.StateChanged), so a reconnected worker
// gets work at once; a connected peer that is not ready (capacity 0, a
// draining worker, no info handler yet) is asked again with a backoff
// from DispatcherOptions.ProbeInterval to MaxProbeInterval.
// When every worker is full the gateway stops reading from Prime, so gRPC
// flow control holds the backlog at Prime rather than in memory; so it
// does while 1024 results wait to be sent (a Prime that does not read its
// responses; a worker's slot is free again once its result is in), so
// the results held in memory are bounded too (Stats.Throttled). A worker
// lost mid-transaction (grid.ErrDisconnected) has its transactions sent to
// another worker; a contract may therefore run more than once on workers
// in that case, but Prime is answered once. A worker shut down with
// Worker.Drain (gridmesh worker at SIGTERM) avoids that: it finishes the
// transactions it runs and refuses new ones (TxResult.Draining), which
// the gateway sends to another worker without counting a failure. Every
// transaction has a deadline (Options.TxTimeout); past it, Prime is
// answered with an error. So is a transaction whose result would be larger
// on the wire than Options.MaxResultBytes (max_result_bytes, just under the
// 4 MiB a default gRPC server takes): Prime would end the stream on it and
// deliver the transaction again, forever.
//
// # Exactly once, as far as the gateway can tell
//
// Prime delivers at least once. The gateway does not run a transaction_id
// again while it is running or its result waits to be sent, and writes
// every result to a Journal (bbolt) before sending it. A transaction
// delivered again whose result is in the journal is answered from there,
// across reconnects and gateway restarts. The journal keeps a result until
// it was sent and is JournalOptions.Retention old (counted from when it was
// written); one whose sending was never recorded (a crash right after it
// was sent) for JournalOptions.MaxAge. "Sent" marks are written in the
// background, those waiting taken together in one write, so a slow disk
// never holds up the answers to Prime; should JournalOptions.MaxPendingMarks
// wait, further marks are dropped (Stats.MarksDropped) and their results
// kept until MaxAge. A result the journal cannot write is sent all the same.
//
// What a kill -9 of the gateway leaves behind, case by case (the crash
// test in cmd/gridmesh makes each happen): a transaction running on a
// worker is delivered again by Prime and run again; a result journaled but
// not sent, or sent but lost on the way (gRPC had it, Prime did not), is
// delivered again and answered from the journal; a result Prime received
// is not delivered again. Prime does not acknowledge responses, so there
// is no window between "received" and "acknowledged" to lose one in.
//
// # Workers
//
// A Worker serves HandlerInfo and HandlerRun on a grid Manager and runs a
// Contract; StartWorker registers them before the node dials or accepts
// anyone, so that a gateway's first probe finds them. The Contract is a
// Go function; ExecContract's command per transaction (the transaction
// JSON on stdin, the result JSON on stdout, stderr as logs, in a process
// group killed as a whole at the deadline); or a ProcessPool's
// long-lived processes (StartProcesses), supervised and restarted with
// backoff when they end or stop answering (ProcessConfig.WedgedAfter
// deadlines in a row missed), each sent up to ProcessConfig.InFlight
// transactions at once as JSON lines on its stdin and answering, in any
// order, on its stdout:
//
//	→ {"id":17,"transaction_json":"{…}","env_vars":{…},"secrets":{…},"can_cancel":true}
//	← {"hello":{"cancel":true}}
//	← {"id":17,"result_json":"{…}","output_to_chain":true,"logs":"…","error":""}
//	→ {"id":18,"cancel":true}
//
// A transaction the worker gives up on (past its deadline, or its caller
// gone) is cancelled on its process with a cancel line, if the process
// said in its hello that it takes them; an older contract never does and
// is sent none. PROCESS.md specifies that line protocol and what a
// crash, a malformed or oversized line, a timeout or shutdown does;
// ServeProcess implements the contract's side for Go, running at most
// ServeProcessOptions.MaxConcurrent transactions at once and reading no
// more of stdin meanwhile. Gateway and workers exchange the msgp types
// TxRequest, TxResult and WorkerInfo.
//
// Local runs the contract in the gateway's process instead, with no grid:
// the shape of Prime's own client template, used for comparison.
//
// # Metrics
//
// Metrics serves a node's counters (the gateway's, the dispatcher's per
// worker, a worker's and its process pool's) in the Prometheus text format
// at MetricsPath and as JSON (NodeStats) at StatsPath, beside the grid's
// per-peer metrics; Node.Handle mounts them.
//
// # Concurrency
//
// Gateway.Run is called once; Stats, Abort, and every method of Dispatcher,
// Worker, Journal, ProcessPool and Metrics, may be called concurrently. Each type owns the
// goroutines it starts and its Close (Run's return, for a Gateway) waits
// for them.
package gateway
