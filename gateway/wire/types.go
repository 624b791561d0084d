package wire

//go:generate go tool msgp -file types.go -io=false

// A map's length comes from the peer, and the generated code allocates the
// map at that size before reading an entry: without a bound, a 10-byte
// message could ask for 2^32 entries and the process would die of it.
//msgp:limit maps:1024

// TxRequest is what the gateway sends a worker for one transaction: the
// fields of Prime's SmartContractRequest.
type TxRequest struct {
	ID      string            `msg:"id"`
	JSON    string            `msg:"json"`
	EnvVars map[string]string `msg:"env"`
	Secrets map[string]string `msg:"sec"`
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
	// transaction without running it because it is shutting down. The
	// gateway sends it to another worker; it is not a result.
	Draining bool `msg:"drain"`
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
