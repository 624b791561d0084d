package wire

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gridmesh/gridmesh/gateway/contract"
)

// Run runs fn for req, within req.Timeout if it is set, and turns its
// outcome, a panic included (contract.Call), into req's TxResult: how a
// worker, or a gateway that runs contracts in its own process, answers a
// transaction. A contract that fails once its deadline passed has
// TimedOut set.
func Run(ctx context.Context, fn contract.Func, req *TxRequest) *TxResult {
	if req.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, time.Duration(req.Timeout), ErrContractTimeout)
		defer cancel()
	}
	out, err := contract.Call(ctx, fn, req.JSON, req.EnvVars, req.Secrets)
	res := &TxResult{ID: req.ID, ResultJSON: out.ResultJSON, OutputToChain: out.OutputToChain, Logs: out.Logs}
	if err != nil {
		res.Error = err.Error()
		if errors.Is(context.Cause(ctx), ErrContractTimeout) {
			res.TimedOut = true
			res.Error = fmt.Sprintf("contract timed out after %v: %v", time.Duration(req.Timeout), err)
		}
	}
	return res
}
