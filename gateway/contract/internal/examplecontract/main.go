// Command examplecontract is a smart contract that runs as a long-lived
// process under a gridmesh worker in mode process, written with the
// standard library only: it speaks the line protocol of
// gateway/contract/PROCESS.md, one JSON object per line, requests on stdin and
// answers on stdout. It keeps state across transactions (a counter) and
// runs transactions concurrently, so its answers may come out of order.
//
//	go build -o contract ./gateway/contract/internal/examplecontract
//	# worker.yaml: mode: process, command: [./contract]
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"sync"
	"sync/atomic"
)

// request is one transaction from the worker.
type request struct {
	ID              uint64            `json:"id"`
	TransactionJSON string            `json:"transaction_json"`
	EnvVars         map[string]string `json:"env_vars"`
	Secrets         map[string]string `json:"secrets"`
}

// answer is the contract's answer to one request; ID is the request's.
type answer struct {
	ID            uint64 `json:"id"`
	ResultJSON    string `json:"result_json"`
	OutputToChain bool   `json:"output_to_chain"`
	Logs          string `json:"logs,omitempty"`
	Error         string `json:"error,omitempty"`
}

var runs atomic.Int64 // state kept across transactions

// run is the contract's logic for one transaction.
func run(req *request) answer {
	var tx struct {
		Header struct {
			TxnID string `json:"txn_id"`
		} `json:"header"`
		Payload json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal([]byte(req.TransactionJSON), &tx); err != nil {
		return answer{ID: req.ID, Error: "bad transaction: " + err.Error()}
	}
	n := runs.Add(1)
	result, _ := json.Marshal(map[string]any{"txn_id": tx.Header.TxnID, "payload": tx.Payload, "run": n})
	return answer{
		ID: req.ID, ResultJSON: string(result), OutputToChain: true,
		Logs: fmt.Sprintf("run %d on chain %s", n, req.EnvVars["DRAGONCHAIN_ID"]),
	}
}

func main() {
	log.SetOutput(os.Stderr) // stdout carries answers only; logs go to stderr
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<10), 64<<20) // room for a large transaction
	out := json.NewEncoder(os.Stdout)       // Encode writes one line per value
	var mu sync.Mutex                       // one answer written at a time
	var wg sync.WaitGroup
	for in.Scan() {
		req := new(request)
		if err := json.Unmarshal(in.Bytes(), req); err != nil {
			log.Fatalf("bad request line: %v", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := run(req)
			mu.Lock()
			defer mu.Unlock()
			if err := out.Encode(a); err != nil {
				log.Fatalf("write answer: %v", err)
			}
		}()
	}
	wg.Wait() // stdin closed: the worker is stopping; answer what is running, then exit
	if err := in.Err(); err != nil {
		log.Fatal(err)
	}
}
