package wire_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway/contract"
	"github.com/gridmesh/gridmesh/gateway/wire"
)

func TestRunTimeout(t *testing.T) {
	waits := func(ctx context.Context, _ string, _, _ map[string]string) (contract.Output, error) {
		<-ctx.Done()
		return contract.Output{Logs: "gave up"}, ctx.Err()
	}
	req := &wire.TxRequest{ID: "t1", Timeout: int64(20 * time.Millisecond)}
	res := wire.Run(context.Background(), waits, req)
	if !res.TimedOut || res.ID != "t1" || res.Logs != "gave up" ||
		!strings.HasPrefix(res.Error, "contract timed out after 20ms: context deadline exceeded") {
		t.Fatalf("result %+v", res)
	}
}

func TestRunErrorsThatAreNotTimeouts(t *testing.T) {
	fails := func(context.Context, string, map[string]string, map[string]string) (contract.Output, error) {
		return contract.Output{}, errors.New("bad input")
	}
	res := wire.Run(context.Background(), fails, &wire.TxRequest{ID: "t2", Timeout: int64(time.Hour)})
	if res.TimedOut || res.Error != "bad input" {
		t.Fatalf("result %+v", res)
	}
	// The caller's own cancellation is not the contract's timeout.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	waits := func(ctx context.Context, _ string, _, _ map[string]string) (contract.Output, error) {
		<-ctx.Done()
		return contract.Output{}, ctx.Err()
	}
	if res := wire.Run(ctx, waits, &wire.TxRequest{ID: "t3", Timeout: int64(time.Hour)}); res.TimedOut || res.Error != "context canceled" {
		t.Fatalf("cancelled: %+v", res)
	}
	panics := func(context.Context, string, map[string]string, map[string]string) (contract.Output, error) {
		panic("boom")
	}
	if res := wire.Run(context.Background(), panics, &wire.TxRequest{ID: "t4"}); !strings.HasPrefix(res.Error, "contract panicked: boom") {
		t.Fatalf("panic: %+v", res)
	}
}
