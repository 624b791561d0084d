package contract_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gridmesh/gridmesh/gateway/contract"
)

func TestCallRecoversPanic(t *testing.T) {
	boom := func(context.Context, string, map[string]string, map[string]string) (contract.Output, error) {
		panic("boom")
	}
	_, err := contract.Call(context.Background(), boom, "{}", nil, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "contract panicked: boom\n") || !strings.Contains(err.Error(), "goroutine") {
		t.Fatalf("panic became %v, want the panic and its stack", err)
	}
}

func TestCallPassesThrough(t *testing.T) {
	want := errors.New("bad tx")
	fn := func(_ context.Context, tx string, env, sec map[string]string) (contract.Output, error) {
		return contract.Output{ResultJSON: tx + env["A"] + sec["S"], OutputToChain: true, Logs: "l"}, want
	}
	out, err := contract.Call(context.Background(), fn, "x", map[string]string{"A": "y"}, map[string]string{"S": "z"})
	if err != want || out != (contract.Output{ResultJSON: "xyz", OutputToChain: true, Logs: "l"}) {
		t.Fatalf("got %+v, %v", out, err)
	}
}

func TestAppendCancelLine(t *testing.T) {
	if got := string(contract.AppendCancelLine([]byte("x"), 42)); got != "x{\"id\":42,\"cancel\":true}\n" {
		t.Fatalf("got %q", got)
	}
}
