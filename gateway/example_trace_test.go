package gateway_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/gateway/contract"
	"github.com/gridmesh/gridmesh/gateway/primesim"
)

// ExampleOptions_tracing traces a gateway that runs its contract in
// process (NewLocal): each transaction is one trace with a span per step.
// With grid workers (NewDispatcher) and grid.Options.TracerProvider and
// worker.Options.TracerProvider set, the grid's and the worker's spans
// join it under gateway.dispatch. In production the provider exports
// OTLP (see the gridmesh command's OTEL_* variables).
func ExampleOptions_tracing() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prime, _ := primesim.New(primesim.Config{APIKey: "key", Contracts: []string{"sc"}})
	_ = prime.Start("127.0.0.1:0")
	defer prime.Close()
	dir, _ := os.MkdirTemp("", "gateway-example")
	defer os.RemoveAll(dir)
	journal, _ := gateway.OpenJournal(filepath.Join(dir, "journal.db"), gateway.JournalOptions{})
	defer journal.Close()

	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	ok := func(context.Context, string, map[string]string, map[string]string) (contract.Output, error) {
		return contract.Output{ResultJSON: `{"ok":true}`}, nil
	}
	gw, _ := gateway.New(gateway.Options{
		Prime: gateway.PrimeConfig{
			ServerAddress: prime.Addr().String(), ChainID: primesim.DefaultChainID, SmartContractID: "sc", APIKey: "key",
		},
		Runner: gateway.NewLocal(ok, 1), Journal: journal,
		TracerProvider: tp,
	})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- gw.Run(runCtx) }()
	_ = prime.Generate(ctx, "sc", 1, 0)
	_ = prime.WaitAnswered(ctx, 1)
	stop()
	<-done

	var walk func(parent string, d int)
	walk = func(parent string, d int) {
		for _, s := range byStart(spans.Ended()) {
			if s.Parent().SpanID().String() == parent || (parent == "" && !s.Parent().IsValid()) {
				fmt.Printf("%*s%s\n", 2*d, "", s.Name())
				walk(s.SpanContext().SpanID().String(), d+1)
			}
		}
	}
	walk("", 0)
	// Output:
	// gateway.transaction
	//   prime.receive
	//   gateway.queue_wait
	//   gateway.dispatch
	//     contract.run
	//   gateway.journal_write
	//   prime.send
}

// byStart sorts spans by their start.
func byStart(spans []sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	out := append([]sdktrace.ReadOnlySpan(nil), spans...)
	for i := range out {
		for j := i; j > 0 && out[j].StartTime().Before(out[j-1].StartTime()); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}
