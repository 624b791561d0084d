package main

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/gateway/worker"
	"github.com/gridmesh/gridmesh/internal/ops"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

func TestTracingEnv(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		on   bool
		fail string // the variable the error names
	}{
		{env: nil},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, on: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1/v1/traces"}, on: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, on: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, on: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}},
		{env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, fail: "OTEL_TRACES_EXPORTER"},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, fail: "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "thrift"}, fail: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"},
	} {
		t.Run(fmt.Sprint(tc.env), func(t *testing.T) {
			tp, stop, err := startTracing(context.Background(), func(k string) string { return tc.env[k] }, "test", "", slog.New(slog.DiscardHandler))
			switch {
			case tc.fail != "":
				if !errors.Is(err, errTracingConfig) || !strings.Contains(err.Error(), tc.fail) {
					t.Fatalf("err %v, want one naming %s", err, tc.fail)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			defer stop()
			if (tp != nil) != tc.on {
				t.Fatalf("tracing on: %v, want %v", tp != nil, tc.on)
			}
		})
	}
}

// otlpReceiver is an OTLP/HTTP trace receiver: it decodes every export
// request and keeps the spans, by the service that sent them.
type otlpReceiver struct {
	*httptest.Server
	mu    sync.Mutex
	spans map[string][]*tracepb.Span // service.name → spans
	bad   []string
}

func startOTLPReceiver(t *testing.T) *otlpReceiver {
	r := &otlpReceiver{spans: map[string][]*tracepb.Span{}}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

func (r *otlpReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body := io.Reader(req.Body)
	if req.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = gz
	}
	b, err := io.ReadAll(body)
	var msg collectorpb.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(b, &msg)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil || req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" {
		r.bad = append(r.bad, fmt.Sprintf("%s %s %q: %v", req.Method, req.URL.Path, req.Header.Get("Content-Type"), err))
		http.Error(w, "bad export", http.StatusBadRequest)
		return
	}
	for _, rs := range msg.GetResourceSpans() {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			r.spans[service] = append(r.spans[service], ss.GetSpans()...)
		}
	}
	out, _ := proto.Marshal(&collectorpb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// find returns service's spans named name whose attribute key is value.
func (r *otlpReceiver) find(service, name, key, value string) []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range r.spans[service] {
		if s.GetName() != name {
			continue
		}
		for _, kv := range s.GetAttributes() {
			if kv.GetKey() == key && kv.GetValue().GetStringValue() == value {
				out = append(out, s)
			}
		}
	}
	return out
}

// TestProcessesTracingOTLP runs "gridmesh gateway" and "gridmesh worker"
// as processes, told by the standard OTEL_* variables to export OTLP to a
// receiver in the test: the transactions' spans arrive from both, under
// their service names, each transaction one trace across the two
// processes, the worker's command got its contract span's TRACEPARENT,
// and everything was flushed at SIGTERM.
func TestProcessesTracingOTLP(t *testing.T) {
	const n = 3
	prime, ctx := processTest(t)
	recv := startOTLPReceiver(t)
	c := newTestCluster(t, 1)
	gwCfg := c.gatewayConfig(prime.Addr().String(), "")
	wkCfg := c.workerConfig(1, `command: [sh, -c, 'cat >/dev/null; printf "{\"tp\":\"%s\"}" "$TRACEPARENT"']`+"\ncapacity: 2\n")
	env := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + recv.URL, "OTEL_BSP_SCHEDULE_DELAY=50"}
	wk := startChildEnv(t, ctx, append(env, "OTEL_SERVICE_NAME=contract-runner"), "worker", "-config", wkCfg)
	gw := startChildEnv(t, ctx, append(env, "OTEL_TRACES_SAMPLER=always_on"), "gateway", "-config", gwCfg)
	var ids []string
	for i := range n {
		tx, err := prime.NewTransaction("sc", i, n)
		if err != nil {
			t.Fatal(err)
		}
		id, err := prime.Submit("sc", tx)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := prime.WaitAnswered(ctx, n); err != nil {
		t.Fatalf("%v\ngateway:\n%s\nworker:\n%s", err, gw.stderr.String(), wk.stderr.String())
	}
	// The latency histograms and the stats' tx_latency, on the gateway's
	// operations port.
	var st gateway.NodeStats
	testutil.WaitUntil(t, "the answers counted", func() bool {
		var err error
		st, err = scrapeStats(ctx, c.gatewayAddr())
		return err == nil && st.Gateway.TxLatency.Count == n
	})
	if l := st.Gateway.TxLatency; l.Window != n || l.P50 <= 0 || l.P50 > l.P99 {
		t.Errorf("tx_latency %+v", l)
	}
	metrics := get(t, ctx, "http://"+c.gatewayAddr()+ops.MetricsPath)
	for _, want := range []string{
		"# TYPE gridmesh_gateway_transaction_seconds histogram\n", fmt.Sprintf("gridmesh_gateway_transaction_seconds_count %d\n", n),
		fmt.Sprintf("gridmesh_gateway_queue_wait_seconds_count %d\n", n),
		fmt.Sprintf("gridmesh_gateway_worker_contract_seconds_count{worker=%q} %d\n", c.names[1], n),
		fmt.Sprintf("gridmesh_gateway_worker_contract_errors_total{kind=\"error\",worker=%q} 0\n", c.names[1]), // the registry sorts labels
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	testutil.CheckPromtool(t, metrics)
	t.Logf("the gateway's latency histograms on /metrics:\n%s", histogramLines(metrics))
	gw.term(t, "gateway")
	wk.term(t, "worker")
	recv.mu.Lock()
	bad := recv.bad
	recv.mu.Unlock()
	if len(bad) > 0 {
		t.Fatalf("bad exports: %v", bad)
	}
	for _, line := range []string{`msg="tracing: on" exporter=otlp protocol=http/protobuf service=gridmesh-gateway`} {
		if !strings.Contains(gw.stderr.String(), line) {
			t.Errorf("gateway log lacks %q:\n%s", line, gw.stderr.String())
		}
	}
	for _, id := range ids {
		roots := recv.find("gridmesh-gateway", gateway.SpanTransaction, string(gateway.AttrTransactionID), id)
		if len(roots) != 1 {
			t.Fatalf("%d root spans for %s; services %v", len(roots), id, recv.services())
		}
		steps := recv.children("gridmesh-gateway", roots[0])
		if strings.Join(steps, " ") != strings.Join([]string{gateway.SpanReceive, gateway.SpanQueueWait, gateway.SpanDispatch, gateway.SpanJournalWrite, gateway.SpanSend}, " ") {
			t.Errorf("%s: children %v", id, steps)
		}
		ws := recv.find("contract-runner", worker.SpanWorker, string(worker.AttrTransactionID), id)
		if len(ws) != 1 {
			t.Fatalf("%d worker spans for %s", len(ws), id)
		}
		// One trace across the processes: the worker's span is in the
		// gateway's trace, under the grid's server span of the call.
		if string(ws[0].GetTraceId()) != string(roots[0].GetTraceId()) {
			t.Errorf("%s: the worker's span is in trace %x, the gateway's is %x", id, ws[0].GetTraceId(), roots[0].GetTraceId())
		}
		cs := recv.childrenSpans("contract-runner", ws[0])
		if len(cs) != 1 || cs[0].GetName() != worker.SpanContract {
			t.Fatalf("worker span's children %v", cs)
		}
		resp, _ := prime.Answer("sc", id)
		want := fmt.Sprintf(`{"tp":"00-%s-%s-01"}`, hex.EncodeToString(cs[0].GetTraceId()), hex.EncodeToString(cs[0].GetSpanId()))
		if resp.GetResultJson() != want {
			t.Errorf("answer %q, want the command's TRACEPARENT %s", resp.GetResultJson(), want)
		}
	}
}

// services lists the services that exported spans.
func (r *otlpReceiver) services() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for s, spans := range r.spans {
		out = append(out, fmt.Sprintf("%s (%d spans)", s, len(spans)))
	}
	return out
}

// childrenSpans returns the spans of service whose parent is parent.
func (r *otlpReceiver) childrenSpans(service string, parent *tracepb.Span) []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range r.spans[service] {
		if string(s.GetParentSpanId()) == string(parent.GetSpanId()) && string(s.GetTraceId()) == string(parent.GetTraceId()) {
			out = append(out, s)
		}
	}
	return out
}

// children returns the names of parent's children in start order.
func (r *otlpReceiver) children(service string, parent *tracepb.Span) []string {
	cs := r.childrenSpans(service, parent)
	for i := range cs { // few: insertion sort by start time
		for j := i; j > 0 && cs[j].GetStartTimeUnixNano() < cs[j-1].GetStartTimeUnixNano(); j-- {
			cs[j], cs[j-1] = cs[j-1], cs[j]
		}
	}
	names := make([]string, len(cs))
	for i, s := range cs {
		names[i] = s.GetName()
	}
	return names
}

// histogramLines returns the gateway's histogram lines of an exposition.
func histogramLines(metrics string) string {
	var out []string
	for _, l := range strings.Split(metrics, "\n") {
		if strings.Contains(l, "gridmesh_gateway_") && strings.Contains(l, "_seconds") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
