package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/gridmesh/gridmesh/gateway/contract"
	"github.com/gridmesh/gridmesh/gateway/primesim"
	"github.com/gridmesh/gridmesh/gateway/worker"
	"github.com/gridmesh/gridmesh/internal/testcluster"
	"github.com/gridmesh/gridmesh/internal/testtrace"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

// traced is what the trace test contracts answer: the trace context they
// were handed and, for traceContract, the span they made of their own.
type traced struct {
	TraceParent string `json:"tp"`
	TraceState  string `json:"ts"`
	SpanTrace   string `json:"span_trace"`
	SpanParent  string `json:"span_parent"`
}

// traceContract is a contract process (the test binary, child mode
// "trace") that makes a span of its own, parented on the trace context
// contract.ServeProcess put in its context, as a contract that traces
// with OpenTelemetry would, and answers what it saw.
func traceContract(ctx context.Context, _ string, _, _ map[string]string) (contract.Output, error) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	carrier := propagation.MapCarrier{"traceparent": contract.TraceParent(ctx), "tracestate": contract.TraceState(ctx)}
	_, span := tp.Tracer("contract").Start(propagation.TraceContext{}.Extract(ctx, carrier), "contract's own work")
	span.End()
	s := rec.Ended()[0]
	out, err := json.Marshal(traced{
		TraceParent: contract.TraceParent(ctx), TraceState: contract.TraceState(ctx),
		SpanTrace: s.SpanContext().TraceID().String(), SpanParent: s.Parent().SpanID().String(),
	})
	return contract.Output{ResultJSON: string(out)}, err
}

// traceparentOf is the W3C traceparent of a sampled span context.
func traceparentOf(sc trace.SpanContext) string {
	return fmt.Sprintf("00-%s-%s-01", sc.TraceID(), sc.SpanID())
}

// answerOf decodes the answer Prime got for id.
func answerOf(t *testing.T, prime *primesim.Server, id string) traced {
	t.Helper()
	resp, _ := prime.Answer(testcluster.ContractID, id)
	var r traced
	if err := json.Unmarshal([]byte(resp.GetResultJson()), &r); err != nil || resp.GetError() != "" {
		t.Fatalf("answer %v: %v", resp, err)
	}
	return r
}

// contractSpanOf returns the contract.run span of transaction id.
func contractSpanOf(t *testing.T, rec *testtrace.Recorder, id string) trace.SpanContext {
	t.Helper()
	spans := rec.Ended()
	ws := testtrace.Find(spans, worker.SpanWorker, worker.AttrTransactionID, id)
	if len(ws) != 1 {
		t.Fatalf("%d worker spans for %s:\n%s", len(ws), id, testtrace.Format(spans))
	}
	cs := testtrace.Find(testtrace.Trace(spans, ws[0].SpanContext().TraceID()), worker.SpanContract, "", "")
	if len(cs) != 1 || cs[0].Parent().SpanID() != ws[0].SpanContext().SpanID() || testtrace.Attr(cs[0], worker.AttrMode) != worker.ModeFunc {
		t.Fatalf("contract span of %s:\n%s", id, testtrace.Format(spans))
	}
	return cs[0].SpanContext()
}

// TestExecTraceParent: a command run per transaction finds its contract
// span's trace context in TRACEPARENT; untraced, it has no TRACEPARENT.
func TestExecTraceParent(t *testing.T) {
	fn := execContract(t, worker.ExecConfig{Command: sh(`printf '{"tp":"%s","ts":"%s","set":"%s"}' "$TRACEPARENT" "$TRACESTATE" "${TRACEPARENT+yes}"`)})
	out, err := fn(testutil.Context(t), "{}", nil, nil)
	if err != nil || out.ResultJSON != `{"tp":"","ts":"","set":""}` {
		t.Fatalf("untraced: %q %v", out.ResultJSON, err)
	}
	// A span context with a tracestate, as a caller's.
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})
	ts, _ := trace.ParseTraceState("vendor=abc")
	ctx := trace.ContextWithRemoteSpanContext(testutil.Context(t), sc.WithTraceState(ts))
	out, err = fn(ctx, "{}", map[string]string{"TRACEPARENT": "from the transaction"}, nil)
	if want := fmt.Sprintf(`{"tp":"%s","ts":"vendor=abc","set":"yes"}`, traceparentOf(sc)); err != nil || out.ResultJSON != want {
		t.Fatalf("traced: %q %v, want %s", out.ResultJSON, err, want)
	}

	rec := testtrace.New(t)
	prime := testcluster.StartPrime(t, primesim.Config{})
	c := testcluster.Start(t, testcluster.Options{Workers: 1, Prime: testcluster.PrimeConfig(prime), Contract: fn, TracerProvider: rec.Provider})
	ids := testcluster.Submit(t, prime, 1)
	testcluster.WaitAnswered(t, prime, 1, c)
	c.Stop()
	if got, want := answerOf(t, prime, ids[0]).TraceParent, traceparentOf(contractSpanOf(t, rec, ids[0])); got != want {
		t.Fatalf("the command got TRACEPARENT %q, want its contract span's %q", got, want)
	}
}

// TestProcessTraceParent: a contract process gets the trace context in
// its request line, contract.ServeProcess hands it to the contract, and
// a span the contract makes of its own joins the transaction's trace as a
// child of the worker's contract span.
func TestProcessTraceParent(t *testing.T) {
	pool := startPool(t, "trace", worker.ProcessConfig{})
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{7}, SpanID: trace.SpanID{8}, TraceFlags: trace.FlagsSampled})
	ts, _ := trace.ParseTraceState("a=1,b=2")
	out, err := pool.Contract(trace.ContextWithRemoteSpanContext(testutil.Context(t), sc.WithTraceState(ts)), "{}", nil, nil)
	var r traced
	if err != nil || json.Unmarshal([]byte(out.ResultJSON), &r) != nil {
		t.Fatalf("%q %v", out.ResultJSON, err)
	}
	if r.TraceParent != traceparentOf(sc) || r.TraceState != "a=1,b=2" || r.SpanTrace != sc.TraceID().String() || r.SpanParent != sc.SpanID().String() {
		t.Fatalf("the process saw %+v", r)
	}
	out, err = pool.Contract(testutil.Context(t), "{}", nil, nil)
	if err != nil || json.Unmarshal([]byte(out.ResultJSON), &r) != nil || r.TraceParent != "" || r.TraceState != "" {
		t.Fatalf("untraced: %q %v", out.ResultJSON, err)
	}

	rec := testtrace.New(t)
	prime := testcluster.StartPrime(t, primesim.Config{})
	c := testcluster.Start(t, testcluster.Options{Workers: 1, Prime: testcluster.PrimeConfig(prime), Contract: pool.Contract, TracerProvider: rec.Provider})
	ids := testcluster.Submit(t, prime, 1)
	testcluster.WaitAnswered(t, prime, 1, c)
	c.Stop()
	cs := contractSpanOf(t, rec, ids[0])
	if r := answerOf(t, prime, ids[0]); r.TraceParent != traceparentOf(cs) || r.SpanTrace != cs.TraceID().String() || r.SpanParent != cs.SpanID().String() {
		t.Fatalf("the process saw %+v; its contract span is %s", r, traceparentOf(cs))
	}
}
