package contract

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
)

// ErrPanicked is wrapped by the error Call returns for a Func that
// panicked. Match it with errors.Is.
var ErrPanicked = errors.New("contract panicked")

// Func runs a smart contract for one transaction: txJSON is the
// transaction as Prime sent it, env and secrets its environment and
// secrets. It returns the result JSON, whether Prime should write it to
// the chain, and the logs; an error is reported to Prime in the response's
// error field (with the logs). ctx carries the transaction's deadline.
type Func func(ctx context.Context, txJSON string, env, secrets map[string]string) (Output, error)

// Output is what a Func produced.
type Output struct {
	ResultJSON    string
	OutputToChain bool
	Logs          string
}

// Call runs fn and turns a panic in it into an error that quotes the
// panic and its stack (wrapping ErrPanicked), so that one bad transaction is answered with an
// error instead of ending the process.
func Call(ctx context.Context, fn Func, txJSON string, env, secrets map[string]string) (out Output, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v\n%s", ErrPanicked, p, debug.Stack())
		}
	}()
	return fn(ctx, txJSON, env, secrets)
}
