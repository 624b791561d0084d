package contract_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/gridmesh/gridmesh/gateway/contract"
)

const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func TestTraceContext(t *testing.T) {
	ctx := context.Background()
	if contract.TraceParent(ctx) != "" || contract.TraceState(ctx) != "" {
		t.Fatal("a bare context has a trace context")
	}
	if got := contract.WithTraceContext(ctx, "", "x=1"); got != ctx {
		t.Fatal("an empty traceparent changed the context")
	}
	ctx = contract.WithTraceContext(ctx, tp, "x=1")
	if contract.TraceParent(ctx) != tp || contract.TraceState(ctx) != "x=1" {
		t.Fatalf("got %q %q", contract.TraceParent(ctx), contract.TraceState(ctx))
	}
}

// TestServeProcessTraceContext: each transaction's context carries its own
// request's trace context, or none.
func TestServeProcessTraceContext(t *testing.T) {
	fn := func(ctx context.Context, txJSON string, _, _ map[string]string) (contract.Output, error) {
		return contract.Output{ResultJSON: `"` + contract.TraceParent(ctx) + " " + contract.TraceState(ctx) + `"`}, nil
	}
	in := `{"id":1,"transaction_json":"{}","traceparent":"` + tp + `","tracestate":"v=1"}` + "\n" + `{"id":2,"transaction_json":"{}"}` + "\n"
	var out strings.Builder
	if err := contract.ServeProcessWith(context.Background(), strings.NewReader(in), &out, fn, contract.ServeProcessOptions{MaxConcurrent: 1}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`{"id":1,"result_json":"\"` + tp + ` v=1\"","output_to_chain":false}`, `{"id":2,"result_json":"\" \"","output_to_chain":false}`} {
		if !strings.Contains(out.String(), want+"\n") {
			t.Errorf("answers %q lack %q", out.String(), want)
		}
	}
}

// ExampleTraceParent: a contract finds its transaction's W3C trace
// context in its context, to parent spans of its own on (with
// OpenTelemetry: propagation.TraceContext{}.Extract over the two
// strings).
func ExampleTraceParent() {
	fn := func(ctx context.Context, _ string, _, _ map[string]string) (contract.Output, error) {
		return contract.Output{ResultJSON: `{}`, Logs: "traceparent " + contract.TraceParent(ctx)}, nil
	}
	stdin := strings.NewReader(`{"id":1,"transaction_json":"{}","traceparent":"` + tp + `"}` + "\n")
	if err := contract.ServeProcess(context.Background(), stdin, os.Stdout, fn); err != nil {
		panic(err)
	}
	// Output:
	// {"id":1,"result_json":"{}","output_to_chain":false,"logs":"traceparent 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
}
