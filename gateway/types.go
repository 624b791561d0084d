package gateway

//go:generate go tool msgp -file types.go -io=false -unexported

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
}

// WorkerInfo is a worker's answer to the info handler: how many
// transactions it runs at once and how many it is running now.
type WorkerInfo struct {
	Capacity int    `msg:"cap"`
	Running  int    `msg:"run"`
	Mode     string `msg:"mode"` // "func", "exec" or "process", for logs
}

// journalEntry is a result as the journal stores it.
type journalEntry struct {
	Result TxResult `msg:"r"`
	Done   int64    `msg:"t"` // when the result was recorded, Unix nanoseconds
	Sent   bool     `msg:"s"` // sent to Prime (marked asynchronously)
}
