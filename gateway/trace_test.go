package gateway_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/gateway/contract"
	"github.com/gridmesh/gridmesh/gateway/primesim"
	"github.com/gridmesh/gridmesh/gateway/wire"
	"github.com/gridmesh/gridmesh/gateway/worker"
	"github.com/gridmesh/gridmesh/internal/testcluster"
	"github.com/gridmesh/gridmesh/internal/testtrace"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

// gatewaySteps are the children of a transaction run and answered, in
// order.
var gatewaySteps = []string{gateway.SpanReceive, gateway.SpanQueueWait, gateway.SpanDispatch, gateway.SpanJournalWrite, gateway.SpanSend}

// txTrace returns the root span of transaction id with outcome, and its
// trace, failing unless there is exactly one such root.
func txTrace(t *testing.T, spans []sdktrace.ReadOnlySpan, id, outcome string) (sdktrace.ReadOnlySpan, []sdktrace.ReadOnlySpan) {
	t.Helper()
	var roots []sdktrace.ReadOnlySpan
	for _, s := range testtrace.Find(spans, gateway.SpanTransaction, gateway.AttrTransactionID, id) {
		if testtrace.Attr(s, gateway.AttrOutcome) == outcome {
			roots = append(roots, s)
		}
	}
	if len(roots) != 1 {
		t.Fatalf("%d %s roots with outcome %s for %s, want 1:\n%s", len(roots), gateway.SpanTransaction, outcome, id, testtrace.Format(spans))
	}
	return roots[0], testtrace.Trace(spans, roots[0].SpanContext().TraceID())
}

// checkSteps checks that root's children are the spans named steps, in
// that order, one after the other, within root.
func checkSteps(t *testing.T, root sdktrace.ReadOnlySpan, tr []sdktrace.ReadOnlySpan, steps ...string) map[string]sdktrace.ReadOnlySpan {
	t.Helper()
	var children []sdktrace.ReadOnlySpan
	for _, s := range tr {
		if s.Parent().SpanID() == root.SpanContext().SpanID() && s.SpanContext().TraceID() == root.SpanContext().TraceID() {
			children = append(children, s)
		}
	}
	byName := map[string]sdktrace.ReadOnlySpan{}
	var names []string
	for i, s := range children {
		names = append(names, s.Name())
		byName[s.Name()] = s
		if i > 0 && s.StartTime().Before(children[i-1].EndTime()) {
			t.Errorf("%s starts before %s ends", s.Name(), children[i-1].Name())
		}
		if s.StartTime().Before(root.StartTime()) || s.EndTime().After(root.EndTime()) {
			t.Errorf("%s is not within its root", s.Name())
		}
	}
	if strings.Join(names, " ") != strings.Join(steps, " ") {
		t.Errorf("root's children %v, want %v:\n%s", names, steps, testtrace.Format(tr))
	}
	return byName
}

// checkNoneOpen fails if a span was started and never ended.
func checkNoneOpen(t *testing.T, r *testtrace.Recorder) {
	t.Helper()
	if open := r.Open(); len(open) > 0 {
		t.Errorf("spans never ended: %v", open)
	}
}

// TestTraceTransaction runs one transaction through a traced gateway,
// grid and worker, real nodes on loopback: one trace, from the gateway's
// receipt of it through the grid's client and server spans of the call to
// the worker's span and its contract's, the contract handed its span's
// trace context, every parent right and every span ended.
func TestTraceTransaction(t *testing.T) {
	rec := testtrace.New(t)
	prime := testcluster.StartPrime(t, primesim.Config{})
	var traceparent atomic.Value
	fn := func(ctx context.Context, txJSON string, env, sec map[string]string) (contract.Output, error) {
		traceparent.Store(contract.TraceParent(ctx))
		return testcluster.Echo(ctx, txJSON, env, sec)
	}
	c := testcluster.Start(t, testcluster.Options{Workers: 1, Prime: testcluster.PrimeConfig(prime), Contract: fn, TracerProvider: rec.Provider})
	ids := testcluster.Submit(t, prime, 1)
	testcluster.WaitAnswered(t, prime, 1, c)
	c.Stop()
	spans := rec.Ended()
	root, tr := txTrace(t, spans, ids[0], "answered")
	if root.SpanKind() != trace.SpanKindConsumer || root.Parent().IsValid() {
		t.Errorf("root kind %v parent %v", root.SpanKind(), root.Parent())
	}
	steps := checkSteps(t, root, tr, gatewaySteps...)
	dispatch := steps[gateway.SpanDispatch]
	if testtrace.Attr(dispatch, gateway.AttrWorker) != c.Names[1] || testtrace.Attr(dispatch, gateway.AttrAttempts) != "1" {
		t.Errorf("dispatch span attributes %v", dispatch.Attributes())
	}
	// Below the dispatch, in the same trace: the grid's client span, its
	// server span on the worker's node, the worker's span, the contract's.
	chain := []struct {
		name string
		kind trace.SpanKind
	}{
		{"gridmesh/" + wire.HandlerRun.Name(), trace.SpanKindClient},
		{"gridmesh/" + wire.HandlerRun.Name(), trace.SpanKindServer},
		{worker.SpanWorker, trace.SpanKindInternal},
		{worker.SpanContract, trace.SpanKindInternal},
	}
	parent, byKind := dispatch, map[trace.SpanKind]sdktrace.ReadOnlySpan{}
	for _, want := range chain {
		var kids []sdktrace.ReadOnlySpan
		for _, s := range tr {
			if s.Parent().SpanID() == parent.SpanContext().SpanID() {
				kids = append(kids, s)
			}
		}
		if len(kids) != 1 || kids[0].Name() != want.name || kids[0].SpanKind() != want.kind {
			t.Fatalf("child of %s: %d spans, want one %s (%v):\n%s", parent.Name(), len(kids), want.name, want.kind, testtrace.Format(tr))
		}
		parent = kids[0]
		byKind[want.kind] = parent
	}
	if server := byKind[trace.SpanKindServer]; !server.Parent().IsRemote() {
		t.Errorf("the server span's parent is not remote: %v", server.Parent())
	}
	ws := testtrace.Find(tr, worker.SpanWorker, worker.AttrTransactionID, ids[0])
	if len(ws) != 1 || testtrace.Attr(ws[0], worker.AttrOutcome) != "ran" || testtrace.Attr(ws[0], worker.AttrWorker) != c.Names[1] {
		t.Errorf("worker span attributes %v", ws)
	}
	// The contract was handed its own span's trace context.
	sc := parent.SpanContext()
	if want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"; traceparent.Load() != want {
		t.Errorf("contract got traceparent %q, want %q", traceparent.Load(), want)
	}
	checkNoneOpen(t, rec)
	t.Logf("one transaction's trace, as the in-memory exporter recorded it:\n%s", testtrace.Format(tr))
}

// TestTraceRedispatch: the worker running a transaction closes; the
// transaction runs on the other worker, and its dispatch span says so.
func TestTraceRedispatch(t *testing.T) {
	rec := testtrace.New(t)
	prime := testcluster.StartPrime(t, primesim.Config{})
	var first atomic.Bool
	g := testcluster.NewGate(func(string) bool { return first.CompareAndSwap(false, true) }) // holds the first run only
	c := testcluster.Start(t, testcluster.Options{Workers: 2, Prime: testcluster.PrimeConfig(prime), Contract: g.Contract, TracerProvider: rec.Provider})
	ids := testcluster.Submit(t, prime, 1)
	g.Recv(t)
	lost := 0
	if c.Workers[1].Running() == 1 {
		lost = 1
	}
	c.StopWorker(lost)
	testcluster.WaitAnswered(t, prime, 1, c)
	c.Stop()
	spans := rec.Ended()
	root, tr := txTrace(t, spans, ids[0], "answered")
	steps := checkSteps(t, root, tr, gatewaySteps...)
	d := steps[gateway.SpanDispatch]
	if testtrace.Attr(d, gateway.AttrWorker) != c.Names[2-lost] || testtrace.Attr(d, gateway.AttrAttempts) != "2" {
		t.Errorf("dispatch span: %s", testtrace.Format([]sdktrace.ReadOnlySpan{d}))
	}
	if ev := d.Events(); len(ev) != 1 || ev[0].Name != gateway.EventRedispatch {
		t.Errorf("dispatch events %v", ev)
	}
	// Each worker traced its run: the first gave it up, the second ran it.
	ws := testtrace.Find(spans, worker.SpanWorker, worker.AttrTransactionID, ids[0])
	if len(ws) != 2 || testtrace.Attr(ws[0], worker.AttrOutcome) != "given_up" || testtrace.Attr(ws[1], worker.AttrOutcome) != "ran" {
		t.Errorf("worker spans:\n%s", testtrace.Format(ws))
	}
	checkNoneOpen(t, rec)
	t.Logf("the gateway's trace:\n%s", testtrace.Format(tr))
}

// TestTraceDuplicateAndJournal: a transaction whose result is in the
// journal is answered from it (prime.receive, prime.send); a redelivery
// of a running transaction is a trace of its own, linked to the running
// one.
func TestTraceDuplicateAndJournal(t *testing.T) {
	rec := testtrace.New(t)
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := gateway.OpenJournal(path, gateway.JournalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Put(&wire.TxResult{ID: "known", ResultJSON: `{"from":"journal"}`}); err != nil {
		t.Fatal(err)
	}
	_ = j.Close()
	prime := testcluster.StartPrime(t, primesim.Config{})
	addr := prime.Addr().String()
	g := testcluster.NewGate(func(tx string) bool { return strings.Contains(tx, `"seq":0,`) })
	c := testcluster.Start(t, testcluster.Options{Workers: 1, Prime: testcluster.PrimeConfig(prime), Contract: g.Contract,
		JournalPath: path, TracerProvider: rec.Provider})
	tx, err := prime.NewTransaction(testcluster.ContractID, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	tx.ID = "known"
	if _, err := prime.Submit(testcluster.ContractID, tx); err != nil {
		t.Fatal(err)
	}
	testcluster.WaitAnswered(t, prime, 1, c)
	ids := testcluster.Submit(t, prime, 1)
	g.Recv(t)
	prime.Pause()
	if err := prime.Start(addr); err != nil {
		t.Fatal(err)
	}
	testutil.WaitUntil(t, "the redelivery", func() bool { return c.Gateway.Stats().Duplicates >= 1 })
	close(g.Release)
	testcluster.WaitAnswered(t, prime, 2, c)
	c.Stop()
	spans := rec.Ended()

	root, tr := txTrace(t, spans, "known", "from_journal")
	checkSteps(t, root, tr, gateway.SpanReceive, gateway.SpanSend)

	running, tr := txTrace(t, spans, ids[0], "answered")
	checkSteps(t, running, tr, gatewaySteps...)
	if ev := running.Events(); len(ev) != 1 || ev[0].Name != gateway.EventDuplicate {
		t.Errorf("running transaction's events %v", ev)
	}
	dup, _ := txTrace(t, spans, ids[0], "duplicate")
	if l := dup.Links(); len(l) != 1 || l[0].SpanContext.SpanID() != running.SpanContext().SpanID() {
		t.Errorf("duplicate's links %v", l)
	}
	checkNoneOpen(t, rec)
}

// TestTraceGatewayKilled: a gateway killed while its workers run
// transactions ends their traces (handed back); its successor's traces
// show the workers joining the redelivered transactions to their runs
// (or answering them from their records), linked to those runs' contract
// spans.
func TestTraceGatewayKilled(t *testing.T) {
	const n = 2
	rec := testtrace.New(t)
	prime := testcluster.StartPrime(t, primesim.Config{})
	g := testcluster.NewGate(func(string) bool { return true })
	c := testcluster.Start(t, testcluster.Options{Workers: 1, Prime: testcluster.PrimeConfig(prime), Contract: g.Contract, TracerProvider: rec.Provider})
	ids := testcluster.Submit(t, prime, n)
	for range n {
		g.Recv(t)
	}
	c.KillGateway()
	c.StartGateway()
	// Mostly the worker joins the calls to its runs; a call slower than
	// the release is answered from the record: the same either way.
	testutil.WaitUntil(t, "the redeliveries dispatched", func() bool { return c.Gateway.Stats().Started == n })
	close(g.Release)
	testcluster.WaitAnswered(t, prime, n, c)
	c.Stop()
	spans := rec.Ended()
	for _, id := range ids {
		old, tr := txTrace(t, spans, id, "handed_back")
		checkSteps(t, old, tr, gateway.SpanReceive, gateway.SpanQueueWait, gateway.SpanDispatch)
		root, tr := txTrace(t, spans, id, "answered")
		steps := checkSteps(t, root, tr, gatewaySteps...)
		if testtrace.Attr(steps[gateway.SpanDispatch], gateway.AttrFromRecord) != "true" {
			t.Errorf("dispatch of %s not answered from the record:\n%s", id, testtrace.Format(tr))
		}
		ws := testtrace.Find(spans, worker.SpanWorker, worker.AttrTransactionID, id)
		if len(ws) != 2 || testtrace.Attr(ws[0], worker.AttrOutcome) != "ran" ||
			(testtrace.Attr(ws[1], worker.AttrOutcome) != "joined" && testtrace.Attr(ws[1], worker.AttrOutcome) != "from_record") {
			t.Fatalf("worker spans of %s:\n%s", id, testtrace.Format(ws))
		}
		cs := testtrace.Trace(spans, ws[0].SpanContext().TraceID())
		contractSpan := testtrace.Find(cs, worker.SpanContract, "", "")
		if l := ws[1].Links(); len(contractSpan) != 1 || len(l) != 1 || l[0].SpanContext.SpanID() != contractSpan[0].SpanContext().SpanID() {
			t.Errorf("joined span's links %v, want the run's contract span", l)
		}
	}
	checkNoneOpen(t, rec)
}
