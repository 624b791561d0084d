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

// TestRunKindsAndDuration: a result's kind of error and the contract's
// run time; ErrorKindOf derives the kind for a worker that sent none.
func TestRunKindsAndDuration(t *testing.T) {
	fn := func(ctx context.Context, tx string, _, _ map[string]string) (contract.Output, error) {
		switch tx {
		case "fail":
			return contract.Output{}, errors.New("bad")
		case "panic":
			panic("boom")
		case "slow":
			<-ctx.Done()
			return contract.Output{}, ctx.Err()
		}
		time.Sleep(time.Millisecond)
		return contract.Output{ResultJSON: "{}"}, nil
	}
	for tx, want := range map[string]string{"ok": "", "fail": wire.KindError, "panic": wire.KindPanic, "slow": wire.KindTimeout} {
		res, err := wire.RunContract(context.Background(), fn, &wire.TxRequest{ID: tx, JSON: tx, Timeout: int64(20 * time.Millisecond)})
		if res.ErrorKind != want || wire.ErrorKindOf(res) != want || (err != nil) != (want != "") {
			t.Errorf("%s: kind %q (of %q), err %v; want %q", tx, res.ErrorKind, wire.ErrorKindOf(res), err, want)
		}
		if (tx == "ok" || tx == "slow") && res.Duration < int64(time.Millisecond) || res.Duration <= 0 {
			t.Errorf("%s: duration %v", tx, time.Duration(res.Duration))
		}
	}
	for _, tc := range []struct {
		res  wire.TxResult
		want string
	}{
		{wire.TxResult{}, ""},
		{wire.TxResult{Error: "x"}, wire.KindError},
		{wire.TxResult{Error: "x", TimedOut: true}, wire.KindTimeout},
		{wire.TxResult{Error: "x", ErrorKind: wire.KindProcess}, wire.KindProcess},
		{wire.TxResult{Error: "x", ErrorKind: "made up"}, wire.KindError},
	} {
		if got := wire.ErrorKindOf(&tc.res); got != tc.want {
			t.Errorf("ErrorKindOf(%+v) = %q, want %q", tc.res, got, tc.want)
		}
	}
}
