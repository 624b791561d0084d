package wire

//go:generate go tool msgp -file types.go -io=false

// A map's length comes from the peer, and the generated code allocates the
// map at that size before reading an entry: without a bound, a 10-byte
// message could ask for 2^32 entries and the process would die of it.
//msgp:limit arrays:1048576 maps:1024

// TxRequest is what the gateway sends a worker for one transaction: the
// fields of Prime's SmartContractRequest.
type TxRequest struct {
	ID      string            `msg:"id"`
	JSON    string            `msg:"json"`
	EnvVars map[string]string `msg:"env"`
	Secrets map[string]string `msg:"sec"`
	// Timeout is the contract's deadline in nanoseconds, counted from when
	// the worker starts it; 0: none but the call's. A contract still
	// running at it is cancelled, and its error is the transaction's
	// answer (TxResult.TimedOut). Workers before it ignore the field.
	Timeout int64 `msg:"tmo"`
}

// TxResult is a worker's answer for one transaction: the fields of Prime's
// SmartContractResponse. A contract that failed has a non-empty Error; that
// is still an answer, sent to Prime like any other.
type TxResult struct {
	ID            string `msg:"id"`
	ResultJSON    string `msg:"res"`
	OutputToChain bool   `msg:"otc"`
	Logs          string `msg:"logs"`
	Error         string `msg:"err"`
	// Draining is set, with Error, when the worker refused the
	// transaction without running it because it is shutting down, or gave
	// it up unfinished as it closed. The gateway sends it to another
	// worker; it is not a result.
	Draining bool `msg:"drain"`
	// Abandoned is set, with Draining, when the worker had started the
	// contract and gave it up unfinished (it was closing): running the
	// transaction elsewhere may run it a second time.
	Abandoned bool `msg:"abnd"`
	// TimedOut: the contract ran past TxRequest.Timeout; Error says so.
	// It is the transaction's answer, like any contract error.
	TimedOut bool `msg:"tmo"`
	// FromRecord: the worker did not run the transaction for this call: it
	// had run it, or was running it, for an earlier call (the gateway that
	// sent it died), and answered from its record of runs.
	FromRecord bool `msg:"rec"`
	// Duration is how long the contract ran on the worker, in
	// nanoseconds; 0 for an answer that ran nothing (Draining,
	// FromRecord) and from workers before the field.
	Duration int64 `msg:"dur"`
	// ErrorKind classifies a non-empty Error: one of the Kind constants,
	// a small fixed set that metrics may use as a label. Workers before
	// the field leave it empty; ErrorKindOf then derives it.
	ErrorKind string `msg:"ekind"`
}

// Recent is a worker's answer to HandlerRecent: the transactions it runs
// or ran recently and still holds the results of, by transaction ID. A
// gateway that starts (again) sends a transaction Prime delivers with one
// of these IDs to that worker, which answers it without running it again.
type Recent struct {
	IDs []string `msg:"ids"`
}

// WorkerInfo is a worker's answer to the info handler: how many
// transactions it runs at once and how many it is running now. A worker
// that answers Capacity 0 is asked again later (a draining one does).
type WorkerInfo struct {
	Capacity int    `msg:"cap"`
	Running  int    `msg:"run"`
	Mode     string `msg:"mode"` // "func", "exec" or "process", for logs
	// Draining: the worker is shutting down. It runs the transactions it
	// has and refuses new ones; Capacity is 0.
	Draining bool `msg:"drain"`
}
