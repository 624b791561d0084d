package wire

import (
	"context"

	"github.com/gridmesh/gridmesh/gateway/contract"
)

// Run runs fn for req and turns its outcome, a panic included
// (contract.Call), into req's TxResult: how a worker, or a gateway that
// runs contracts in its own process, answers a transaction.
func Run(ctx context.Context, fn contract.Func, req *TxRequest) *TxResult {
	out, err := contract.Call(ctx, fn, req.JSON, req.EnvVars, req.Secrets)
	res := &TxResult{ID: req.ID, ResultJSON: out.ResultJSON, OutputToChain: out.OutputToChain, Logs: out.Logs}
	if err != nil {
		res.Error = err.Error()
	}
	return res
}
