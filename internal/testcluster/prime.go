package testcluster

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/gateway/contract"
	"github.com/gridmesh/gridmesh/gateway/primesim"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

// The credentials the simulator and the gateway share in tests.
const (
	APIKey     = "test-key"
	ChainID    = "chain-1"
	ContractID = "sc-1"
	Secret     = "gateway test secret"
)

// StartPrime starts a simulator on loopback with the test credentials
// (cfg.ChainID, if set, is kept) and closes it at cleanup.
func StartPrime(tb testing.TB, cfg primesim.Config) *primesim.Server {
	tb.Helper()
	cfg.APIKey, cfg.Contracts = APIKey, []string{ContractID}
	if cfg.ChainID == "" {
		cfg.ChainID = ChainID
	}
	s, err := primesim.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// PrimeConfig is the gateway's Prime configuration for s, with fast
// reconnects.
func PrimeConfig(s *primesim.Server) gateway.PrimeConfig {
	return gateway.PrimeConfig{
		ServerAddress: s.Addr().String(), ChainID: ChainID, SmartContractID: ContractID, APIKey: APIKey,
		ReconnectDelay: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	}
}

// Echo is a contract that answers every transaction with its payload and
// the SMART_CONTRACT_ID it was run for.
func Echo(_ context.Context, txJSON string, env, _ map[string]string) (contract.Output, error) {
	var tx struct {
		Payload json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal([]byte(txJSON), &tx); err != nil {
		return contract.Output{}, err
	}
	return contract.Output{ResultJSON: fmt.Sprintf(`{"payload":%s,"contract":%q}`, tx.Payload, env["SMART_CONTRACT_ID"]), OutputToChain: true}, nil
}

// WaitAnswered waits until s has n answers; on failure it logs c's
// gateway stats and logs, if c is not nil.
func WaitAnswered(tb testing.TB, s *primesim.Server, n int, c *Cluster) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Timeout)
	defer cancel()
	if err := s.WaitAnswered(ctx, n); err != nil {
		if c != nil {
			tb.Logf("gateway stats %+v\nlogs:\n%s", c.Gateway.Stats(), c.Log.Tail(4000))
		}
		tb.Fatalf("%v\n%v", err, s.Report())
	}
}

// CheckReport fails unless every one of n transactions was answered
// exactly once. It waits the simulator's settle time after the last first
// answer (primesim.Server.WaitReport), so that late duplicates count.
func CheckReport(tb testing.TB, s *primesim.Server, n int) primesim.Report {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Timeout)
	defer cancel()
	r, err := s.WaitReport(ctx, n)
	if err != nil {
		tb.Fatalf("%v\n%v", err, r)
	}
	if !r.OK() || r.Submitted != n {
		tb.Fatalf("want %d answered exactly once:\n%v", n, r)
	}
	return r
}

// Submit submits n transactions and returns their IDs.
func Submit(tb testing.TB, s *primesim.Server, n int) []string {
	tb.Helper()
	ids := make([]string, n)
	for i := range ids {
		tx, err := s.NewTransaction(ContractID, i, n)
		if err != nil {
			tb.Fatal(err)
		}
		if ids[i], err = s.Submit(ContractID, tx); err != nil {
			tb.Fatal(err)
		}
	}
	return ids
}
