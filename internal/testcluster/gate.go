package testcluster

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway/contract"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

// Gate is a contract that blocks the transactions it is told to hold
// until Release is closed (or their context ends), and counts runs per
// transaction ID. Its methods may be called concurrently.
type Gate struct {
	mu      sync.Mutex
	runs    map[string]int
	hold    func(txJSON string) bool
	started chan string
	// Release, closed, lets every held transaction go on.
	Release chan struct{}
}

// NewGate returns a Gate that holds the transactions hold is true for
// (none, if hold is nil).
func NewGate(hold func(txJSON string) bool) *Gate {
	return &Gate{runs: make(map[string]int), hold: hold, started: make(chan string, 1024), Release: make(chan struct{})}
}

// Contract runs one transaction: a contract.Func.
func (g *Gate) Contract(ctx context.Context, txJSON string, env, secrets map[string]string) (contract.Output, error) {
	var tx struct {
		Header struct {
			TxnID string `json:"txn_id"`
		} `json:"header"`
	}
	_ = json.Unmarshal([]byte(txJSON), &tx)
	g.mu.Lock()
	g.runs[tx.Header.TxnID]++
	g.mu.Unlock()
	if g.hold != nil && g.hold(txJSON) {
		g.started <- tx.Header.TxnID
		select {
		case <-g.Release:
		case <-ctx.Done():
			return contract.Output{}, ctx.Err()
		}
	}
	return Echo(ctx, txJSON, env, secrets)
}

// RunsOf returns how many times transaction id started.
func (g *Gate) RunsOf(id string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.runs[id]
}

// Recv waits for the next held transaction to start and returns its ID.
func (g *Gate) Recv(tb testing.TB) string {
	tb.Helper()
	select {
	case id := <-g.started:
		return id
	case <-time.After(testutil.Timeout):
		tb.Fatal("timed out waiting for a held transaction to start")
		return ""
	}
}
