package gateway

import (
	"context"
	"fmt"
	"runtime/debug"
)

// Runner runs transactions for a Gateway: a Dispatcher runs them on grid
// workers, a Local runner in this process. Its methods are unexported;
// use NewDispatcher or NewLocal.
type Runner interface {
	// reserve waits until a transaction can start and reserves capacity
	// for it. The gateway stops reading from Prime while it waits.
	reserve(ctx context.Context) (slot, error)
	// run runs req with the reserved slot and releases it. An error means
	// the transaction has no result (the gateway answers with an error
	// or, at shutdown, leaves it to Prime to redeliver).
	run(ctx context.Context, s slot, req *TxRequest) (*TxResult, error)
}

// slot is capacity reserved by Runner.reserve.
type slot any

// Contract runs a smart contract for one transaction: txJSON is the
// transaction as Prime sent it, env and secrets its environment and
// secrets. It returns the result JSON, whether Prime should write it to
// the chain, and the logs; an error is reported to Prime in the response's
// error field (with the logs). ctx carries the transaction's deadline.
type Contract func(ctx context.Context, txJSON string, env, secrets map[string]string) (Output, error)

// Output is what a Contract produced.
type Output struct {
	ResultJSON    string
	OutputToChain bool
	Logs          string
}

// callContract runs fn for req and turns its outcome, a panic included,
// into a TxResult.
func callContract(ctx context.Context, fn Contract, req *TxRequest) (res *TxResult) {
	res = &TxResult{ID: req.ID}
	defer func() {
		if p := recover(); p != nil {
			res.Error = fmt.Sprintf("contract panicked: %v\n%s", p, debug.Stack())
		}
	}()
	out, err := fn(ctx, req.JSON, req.EnvVars, req.Secrets)
	res.ResultJSON, res.OutputToChain, res.Logs = out.ResultJSON, out.OutputToChain, out.Logs
	if err != nil {
		res.Error = err.Error()
	}
	return res
}

// Local runs transactions in this process, up to a fixed number at once:
// the gateway's Prime client wired straight to a contract function, as
// Prime's client template does it, with no grid in between.
type Local struct {
	fn  Contract
	sem chan struct{}
}

// NewLocal returns a Runner that calls fn, at most capacity at a time.
func NewLocal(fn Contract, capacity int) *Local {
	return &Local{fn: fn, sem: make(chan struct{}, max(capacity, 1))}
}

func (l *Local) reserve(ctx context.Context) (slot, error) {
	select {
	case l.sem <- struct{}{}:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (l *Local) run(ctx context.Context, _ slot, req *TxRequest) (*TxResult, error) {
	defer func() { <-l.sem }()
	return callContract(ctx, l.fn, req), nil
}
