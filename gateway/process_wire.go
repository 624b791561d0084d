package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
)

// The process line protocol (PROCESS.md): one JSON object per line, a
// request on the process's stdin, an answer on its stdout.

// processRequest is one transaction sent to a contract process.
type processRequest struct {
	// ID is chosen by the host, unique for the process's lifetime; the
	// answer carries it back.
	ID              uint64            `json:"id"`
	TransactionJSON string            `json:"transaction_json"`
	EnvVars         map[string]string `json:"env_vars,omitempty"`
	Secrets         map[string]string `json:"secrets,omitempty"`
}

// processAnswer is a contract process's answer to one request.
type processAnswer struct {
	ID            uint64 `json:"id"`
	ResultJSON    string `json:"result_json"`
	OutputToChain bool   `json:"output_to_chain"`
	Logs          string `json:"logs,omitempty"`
	Error         string `json:"error,omitempty"`
}

// maxRequestLine bounds a request line ServeProcess reads: a transaction
// of the grid's largest message, JSON escaping included.
const maxRequestLine = 4 * DefaultMaxLineBytes

// ServeProcess is the contract's side of the process line protocol, for
// contracts written in Go (see PROCESS.md): it reads requests from r (the
// process's stdin), runs fn for each in a goroutine of its own, so that
// answers go out as they are ready, in any order, and writes each answer
// to w (stdout) as one line. A panic in fn becomes an answer with an
// error. ctx is passed to fn.
//
// It returns nil when r ends (the host closed stdin: time to exit) and
// every transaction read was answered, or else the first read, decode or
// write error, also once the transactions running were answered.
func ServeProcess(ctx context.Context, r io.Reader, w io.Writer, fn Contract) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxRequestLine)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex // serializes writes to w
		werr error
	)
	answer := func(req *processRequest) {
		defer wg.Done()
		res := callContract(ctx, fn, &TxRequest{JSON: req.TransactionJSON, EnvVars: req.EnvVars, Secrets: req.Secrets})
		line, err := json.Marshal(processAnswer{
			ID: req.ID, ResultJSON: res.ResultJSON, OutputToChain: res.OutputToChain, Logs: res.Logs, Error: res.Error,
		})
		mu.Lock()
		defer mu.Unlock()
		if err == nil && werr == nil {
			_, err = w.Write(append(line, '\n'))
		}
		if err != nil && werr == nil {
			werr = err
		}
	}
	var rerr error
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		req := new(processRequest)
		if err := json.Unmarshal(sc.Bytes(), req); err != nil {
			rerr = fmt.Errorf("gateway: decode request line: %w", err)
			break
		}
		wg.Add(1)
		go answer(req)
	}
	wg.Wait()
	if rerr == nil {
		rerr = sc.Err()
	}
	if rerr != nil {
		return rerr
	}
	return werr
}
