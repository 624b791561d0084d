package contract

import "fmt"

// The process line protocol (PROCESS.md): one JSON object per line. On
// the process's stdin: requests and cancel lines; on its stdout: answers
// and at most one hello line. Both sides, ServeProcess here and the
// worker's process pool, encode and decode these types.

// DefaultMaxLineBytes bounds one line of the process line protocol: the
// grid's default maximum message size, so any answer a worker could send
// on fits.
const DefaultMaxLineBytes = 16 << 20

// Request is one line on a contract process's stdin: a transaction, or,
// with Cancel set, the cancel of the transaction ID.
type Request struct {
	// ID is chosen by the host, unique for the process's lifetime; the
	// answer carries it back.
	ID              uint64            `json:"id"`
	TransactionJSON string            `json:"transaction_json"`
	EnvVars         map[string]string `json:"env_vars,omitempty"`
	Secrets         map[string]string `json:"secrets,omitempty"`
	// CanCancel says that the host sends cancel lines to a process that
	// asked for them with a hello line. A process that does not know the
	// field ignores it.
	CanCancel bool `json:"can_cancel,omitempty"`
	// Cancel makes the line a cancel: the host gave up on request ID.
	// Only a process that wrote a hello with Cancel is sent one.
	Cancel bool `json:"cancel,omitempty"`
	// TraceParent and TraceState are the transaction's W3C trace context
	// (TraceParent's doc), when it is traced; ServeProcess puts them in
	// the contract's context.
	TraceParent string `json:"traceparent,omitempty"`
	TraceState  string `json:"tracestate,omitempty"`
}

// Answer is one line on a contract process's stdout: its answer to one
// request, or, with Hello set, its hello.
type Answer struct {
	ID            uint64 `json:"id"`
	ResultJSON    string `json:"result_json"`
	OutputToChain bool   `json:"output_to_chain"`
	Logs          string `json:"logs,omitempty"`
	Error         string `json:"error,omitempty"`
	Hello         *Hello `json:"hello,omitempty"`
}

// Hello is what a process says it takes beyond requests. It writes it
// once, and only after a request with CanCancel.
type Hello struct {
	Cancel bool `json:"cancel"` // cancel lines
}

// HelloLine is the hello ServeProcess writes: it takes cancel lines.
const HelloLine = `{"hello":{"cancel":true}}` + "\n"

// AppendCancelLine appends the cancel line of request id to b.
func AppendCancelLine(b []byte, id uint64) []byte {
	return fmt.Appendf(b, `{"id":%d,"cancel":true}`+"\n", id)
}
