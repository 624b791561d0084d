package gateway_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/gateway/contract"
	"github.com/gridmesh/gridmesh/gateway/primesim"
	"github.com/gridmesh/gridmesh/internal/testcluster"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

func TestEndToEnd(t *testing.T) {
	const n = 500
	prime := testcluster.StartPrime(t, primesim.Config{})
	c := testcluster.Start(t, testcluster.Options{Workers: 3, Prime: testcluster.PrimeConfig(prime)})
	if err := prime.Generate(testutil.Context(t), testcluster.ContractID, n, 0); err != nil {
		t.Fatal(err)
	}
	testcluster.WaitAnswered(t, prime, n, c)
	if got := c.Journal.Len(); got != n {
		t.Fatalf("journal holds %d results, want %d", got, n)
	}
	c.Stop()
	testcluster.CheckReport(t, prime, n)
	st := c.Gateway.Stats()
	if st.Sent != n || st.Started != n || st.FromJournal != 0 {
		t.Fatalf("stats %+v", st)
	}
	for _, w := range c.Dispatcher.Workers() {
		if w.Done == 0 {
			t.Errorf("worker %s ran nothing: %+v", w.Host, c.Dispatcher.Workers())
		}
	}
}

// TestPrimeRestart stops Prime mid-run and starts it again on the same
// address with its backlog: the gateway reconnects and every transaction
// is answered exactly once, including the ones in flight at the restart
// and the ones submitted while Prime was down.
func TestPrimeRestart(t *testing.T) {
	const n = 300
	prime := testcluster.StartPrime(t, primesim.Config{})
	addr := prime.Addr().String()
	g := testcluster.NewGate(func(string) bool { return true })
	close(g.Release) // nothing is held, but started is fed
	c := testcluster.Start(t, testcluster.Options{Workers: 2, Prime: testcluster.PrimeConfig(prime), Contract: g.Contract})
	testcluster.Submit(t, prime, n)
	testutil.WaitUntil(t, "some answers", func() bool { return prime.Report().Answered >= n/3 })

	prime.Pause()
	testcluster.Submit(t, prime, 50) // queued while Prime is down
	if err := prime.Start(addr); err != nil {
		t.Fatal(err)
	}
	testcluster.WaitAnswered(t, prime, n+50, c)
	c.Stop()
	r := testcluster.CheckReport(t, prime, n+50)
	if st := c.Gateway.Stats(); st.Streams < 2 {
		t.Fatalf("gateway opened %d streams, want a reconnect; report:\n%v", st.Streams, r)
	}
}

// TestDuplicateInFlightNotRunTwice: Prime delivers a transaction again
// (on a new stream) while it is still running; it runs once and is
// answered once.
func TestDuplicateInFlightNotRunTwice(t *testing.T) {
	prime := testcluster.StartPrime(t, primesim.Config{})
	addr := prime.Addr().String()
	g := testcluster.NewGate(func(tx string) bool { return strings.Contains(tx, `"seq":0,`) })
	c := testcluster.Start(t, testcluster.Options{Workers: 1, Prime: testcluster.PrimeConfig(prime), Contract: g.Contract})
	ids := testcluster.Submit(t, prime, 1)
	if got := g.Recv(t); got != ids[0] {
		t.Fatalf("started %s, want %s", got, ids[0])
	}
	prime.Pause()
	if err := prime.Start(addr); err != nil {
		t.Fatal(err)
	}
	testutil.WaitUntil(t, "the redelivery", func() bool { return c.Gateway.Stats().Duplicates >= 1 })
	close(g.Release)
	testcluster.WaitAnswered(t, prime, 1, c)
	c.Stop()
	testcluster.CheckReport(t, prime, 1)
	if runs := g.RunsOf(ids[0]); runs != 1 {
		t.Fatalf("transaction ran %d times", runs)
	}
}

// TestWorkerKilled closes a worker's Manager while it runs transactions:
// they go to the other workers and everything is answered exactly once.
func TestWorkerKilled(t *testing.T) {
	const n = 200
	prime := testcluster.StartPrime(t, primesim.Config{})
	g := testcluster.NewGate(func(string) bool { return true }) // worker 0 holds all it gets
	c := testcluster.Start(t, testcluster.Options{
		Workers: 3, Prime: testcluster.PrimeConfig(prime),
		ContractFor: func(i int) contract.Func {
			if i == 0 {
				return g.Contract
			}
			return testcluster.Echo
		},
	})
	testcluster.Submit(t, prime, n)
	g.Recv(t) // worker 0 is running a transaction
	_ = c.WorkerNodes[0].Close()
	testcluster.WaitAnswered(t, prime, n, c)
	c.Stop()
	testcluster.CheckReport(t, prime, n)
	if c.Dispatcher.Redispatched() == 0 {
		t.Fatalf("no transaction was re-dispatched")
	}
	if !strings.Contains(c.Log.String(), "re-dispatching") {
		t.Fatalf("re-dispatch not logged")
	}
}

// failingStream fails one SendMsg, as a broken transport would.
type failingStream struct {
	grpc.ClientStream
	fail *atomic.Int64
}

func (s failingStream) SendMsg(m any) error {
	if s.fail.Add(-1) == 0 {
		return errors.New("injected send failure")
	}
	return s.ClientStream.SendMsg(m)
}

// TestSendFailure: a Send error tears the stream down; Prime delivers the
// unanswered transaction again on the next stream and it is answered from
// the journal, not run again.
func TestSendFailure(t *testing.T) {
	const n = 100
	prime := testcluster.StartPrime(t, primesim.Config{})
	var fail atomic.Int64
	fail.Store(40) // the 40th Send fails
	pc := testcluster.PrimeConfig(prime)
	pc.DialOptions = []grpc.DialOption{grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			return nil, err
		}
		return failingStream{cs, &fail}, nil
	})}
	g := testcluster.NewGate(nil)
	c := testcluster.Start(t, testcluster.Options{Workers: 2, Prime: pc, Contract: g.Contract})
	ids := testcluster.Submit(t, prime, n)
	testcluster.WaitAnswered(t, prime, n, c)
	c.Stop()
	testcluster.CheckReport(t, prime, n)
	st := c.Gateway.Stats()
	if st.SendErrors != 1 || st.Streams < 2 || st.FromJournal < 1 {
		t.Fatalf("want 1 send error, a reconnect and an answer from the journal: %+v", st)
	}
	for _, id := range ids {
		if g.RunsOf(id) != 1 {
			t.Fatalf("%s ran %d times", id, g.RunsOf(id))
		}
	}
	if !strings.Contains(c.Log.String(), "injected send failure") {
		t.Fatalf("send failure not logged:\n%s", c.Log.Tail(3000))
	}
}

// TestMissingChainID: a stream without x-chain-id is refused by Prime; the
// gateway says so in a clear log line and keeps retrying, and shuts down
// cleanly.
func TestMissingChainID(t *testing.T) {
	prime := testcluster.StartPrime(t, primesim.Config{})
	pc := testcluster.PrimeConfig(prime)
	pc.DialOptions = []grpc.DialOption{grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		md, _ := metadata.FromOutgoingContext(ctx)
		md = md.Copy()
		md.Delete(gateway.MetadataChainID)
		return streamer(metadata.NewOutgoingContext(ctx, md), desc, cc, method, opts...)
	})}
	c := testcluster.Start(t, testcluster.Options{Workers: 1, Prime: pc})
	testutil.WaitUntil(t, "the refusal in the log", func() bool {
		return strings.Contains(c.Log.String(), "missing chain ID") && strings.Contains(c.Log.String(), "Prime refused the stream")
	})
	c.Stop()
	if r := prime.Report(); r.StreamsRejected == 0 || r.StreamsAccepted != 0 {
		t.Fatalf("report:\n%v", r)
	}
	if !strings.Contains(c.Log.String(), "set chain_id") {
		t.Fatalf("no hint in the log:\n%s", c.Log.Tail(2000))
	}
}

// TestGracefulShutdown: at shutdown the gateway stops taking transactions,
// finishes and answers the ones running, and the rest are left to Prime,
// which delivers them to the next gateway; all are answered exactly once.
func TestGracefulShutdown(t *testing.T) {
	const n = 100
	prime := testcluster.StartPrime(t, primesim.Config{})
	g := testcluster.NewGate(func(tx string) bool { return true })
	journal := t.TempDir() + "/journal.db"
	c := testcluster.Start(t, testcluster.Options{Workers: 2, Capacity: 2, Prime: testcluster.PrimeConfig(prime), Contract: g.Contract, JournalPath: journal})
	testcluster.Submit(t, prime, n)
	for range 4 { // both workers full
		g.Recv(t)
	}
	stopped := make(chan struct{})
	go func() { c.Stop(); close(stopped) }()
	testutil.WaitUntil(t, "the gateway to stop taking transactions", func() bool {
		return strings.Contains(c.Log.String(), "shutting down")
	})
	close(g.Release)
	<-stopped
	st := c.Gateway.Stats()
	if st.HandedBack != 0 || st.Sent != st.Started || st.Sent < 4 {
		t.Fatalf("in-flight transactions not finished at shutdown: %+v", st)
	}
	if got := prime.Report().Answered; uint64(got) != st.Sent {
		t.Fatalf("Prime has %d answers, gateway sent %d", got, st.Sent)
	}
	c2 := testcluster.Start(t, testcluster.Options{Workers: 2, Prime: testcluster.PrimeConfig(prime), Contract: g.Contract, JournalPath: journal})
	testcluster.WaitAnswered(t, prime, n, c2)
	c2.Stop()
	testcluster.CheckReport(t, prime, n)
}

// TestGatewayAbort: Abort cuts short a graceful shutdown that would wait
// an hour for a held transaction: Run returns, the transaction is
// cancelled on its worker and left to Prime, and nothing is answered.
// Abort before Run makes Run return at once.
func TestGatewayAbort(t *testing.T) {
	prime := testcluster.StartPrime(t, primesim.Config{})
	g := testcluster.NewGate(func(tx string) bool { return true })
	cancelled := make(chan error, 1)
	fn := func(ctx context.Context, txJSON string, env, secrets map[string]string) (contract.Output, error) {
		out, err := g.Contract(ctx, txJSON, env, secrets)
		cancelled <- ctx.Err()
		return out, err
	}
	c := testcluster.Start(t, testcluster.Options{Workers: 1, Capacity: 1, Prime: testcluster.PrimeConfig(prime), Contract: fn, Drain: time.Hour})
	testcluster.Submit(t, prime, 1)
	g.Recv(t)
	c.Shutdown()
	testutil.WaitUntil(t, "the graceful shutdown", func() bool { return strings.Contains(c.Log.String(), "shutting down") })
	c.Gateway.Abort()
	select {
	case <-c.RunDone():
		if err := c.RunErr(); err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(testutil.Timeout):
		t.Fatal("Run did not return after Abort")
	}
	select {
	case err := <-cancelled:
		if err == nil {
			t.Fatal("the held transaction finished instead of being cancelled")
		}
	case <-time.After(testutil.Timeout):
		t.Fatal("the held transaction was not cancelled on its worker")
	}
	if st := c.Gateway.Stats(); st.HandedBack != 1 || st.Sent != 0 {
		t.Fatalf("stats %+v, want the transaction handed back", st)
	}
	if r := prime.Report(); r.Answered != 0 {
		t.Fatalf("Prime has answers:\n%v", r)
	}
	c.Gateway.Abort() // idempotent

	t.Run("before Run", func(t *testing.T) {
		j, err := gateway.OpenJournal(t.TempDir()+"/j.db", gateway.JournalOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer j.Close()
		gw, err := gateway.New(gateway.Options{Prime: testcluster.PrimeConfig(prime), Runner: gateway.NewLocal(testcluster.Echo, 1), Journal: j, DrainTimeout: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		gw.Abort()
		if err := gw.Run(testutil.Context(t)); err != nil {
			t.Fatalf("Run: %v", err)
		}
	})
}

// TestBackpressure: with every worker full, the gateway does not take
// more transactions from Prime than it can start.
func TestBackpressure(t *testing.T) {
	prime := testcluster.StartPrime(t, primesim.Config{})
	g := testcluster.NewGate(func(tx string) bool { return true })
	c := testcluster.Start(t, testcluster.Options{Workers: 1, Capacity: 1, Prime: testcluster.PrimeConfig(prime), Contract: g.Contract})
	testcluster.Submit(t, prime, 50)
	g.Recv(t)
	// The receive loop takes the second transaction and waits for
	// capacity; it cannot take a third while the first is held.
	testutil.WaitUntil(t, "the second transaction", func() bool { return c.Gateway.Stats().Received >= 2 })
	if st := c.Gateway.Stats(); st.Received != 2 || st.Started != 1 {
		t.Fatalf("gateway took more than it can run: %+v", st)
	}
	close(g.Release)
	testcluster.WaitAnswered(t, prime, 50, c)
	c.Stop()
	testcluster.CheckReport(t, prime, 50)
}

// TestTransactionTimeout: a transaction over its deadline is answered with
// an error, once.
func TestTransactionTimeout(t *testing.T) {
	prime := testcluster.StartPrime(t, primesim.Config{})
	g := testcluster.NewGate(func(tx string) bool { return strings.Contains(tx, `"seq":1,`) })
	c := testcluster.Start(t, testcluster.Options{Workers: 1, Prime: testcluster.PrimeConfig(prime), Contract: g.Contract, TxTimeout: 200 * time.Millisecond})
	ids := testcluster.Submit(t, prime, 3)
	testcluster.WaitAnswered(t, prime, 3, c)
	c.Stop()
	testcluster.CheckReport(t, prime, 3)
	resp, _ := prime.Answer(testcluster.ContractID, ids[1])
	// Either the gateway's deadline or the worker's copy of it fires first.
	if e := resp.GetError(); !strings.Contains(e, "timed out") && !strings.Contains(e, "deadline exceeded") {
		t.Fatalf("answer %v, want a timeout error", resp)
	}
}

// TestMaxReconnectAttempts: with nothing listening, Run gives up after
// max_reconnect_attempts attempts.
func TestMaxReconnectAttempts(t *testing.T) {
	prime := testcluster.StartPrime(t, primesim.Config{})
	pc := testcluster.PrimeConfig(prime)
	_ = prime.Close() // nothing listens there any more
	pc.MaxReconnectAttempts = 3
	j, err := gateway.OpenJournal(t.TempDir()+"/j.db", gateway.JournalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var log testutil.LogBuffer
	gw, err := gateway.New(gateway.Options{Prime: pc, Runner: gateway.NewLocal(testcluster.Echo, 1), Journal: j, Logger: log.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Run(testutil.Context(t)); !errors.Is(err, gateway.ErrMaxReconnects) {
		t.Fatalf("Run: %v, want ErrMaxReconnects", err)
	}
	if got := strings.Count(log.String(), "reconnecting to Prime"); got != 2 {
		t.Fatalf("%d reconnects logged, want 2:\n%s", got, log.String())
	}
}

// TestDirectLocal runs the Prime client with the contract in process (no
// grid), as the template does.
func TestDirectLocal(t *testing.T) {
	const n = 200
	prime := testcluster.StartPrime(t, primesim.Config{})
	j, err := gateway.OpenJournal(t.TempDir()+"/j.db", gateway.JournalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	gw, err := gateway.New(gateway.Options{Prime: testcluster.PrimeConfig(prime), Runner: gateway.NewLocal(testcluster.Echo, 8), Journal: j})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(testutil.Context(t))
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	testcluster.Submit(t, prime, n)
	testcluster.WaitAnswered(t, prime, n, nil)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(testutil.Timeout):
		t.Fatal("Run did not return")
	}
	testcluster.CheckReport(t, prime, n)
}

// TestChaos restarts Prime three times and kills a worker while 1,000
// transactions go through; every one is answered exactly once.
func TestChaos(t *testing.T) {
	const n = 1000
	prime := testcluster.StartPrime(t, primesim.Config{})
	addr := prime.Addr().String()
	slow := func(ctx context.Context, txJSON string, env, secrets map[string]string) (contract.Output, error) {
		select {
		case <-time.After(time.Duration(len(txJSON)%3) * time.Millisecond):
		case <-ctx.Done():
			return contract.Output{}, ctx.Err()
		}
		return testcluster.Echo(ctx, txJSON, env, secrets)
	}
	c := testcluster.Start(t, testcluster.Options{Workers: 3, Capacity: 8, Prime: testcluster.PrimeConfig(prime), Contract: slow})
	genErr := make(chan error, 1)
	go func() { genErr <- prime.Generate(testutil.Context(t), testcluster.ContractID, n, 4000) }()
	for i, at := range []int{n / 5, 2 * n / 5, 3 * n / 5, 4 * n / 5} {
		testutil.WaitUntil(t, "progress", func() bool { return prime.Report().Answered >= at })
		if i == 2 {
			_ = c.WorkerNodes[1].Close()
			continue
		}
		prime.Pause()
		if err := prime.Start(addr); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-genErr; err != nil {
		t.Fatal(err)
	}
	testcluster.WaitAnswered(t, prime, n, c)
	c.Stop()
	r := testcluster.CheckReport(t, prime, n)
	t.Logf("redelivered %d, gateway %+v, re-dispatched %d", r.Redelivered, c.Gateway.Stats(), c.Dispatcher.Redispatched())
}

// TestMethodPath: the gateway opens the stream at the configured method
// path; a wrong one is logged with a hint.
func TestMethodPath(t *testing.T) {
	const path = "/acme.prime.v2.Contracts/Stream"
	prime := testcluster.StartPrime(t, primesim.Config{MethodPath: path})
	pc := testcluster.PrimeConfig(prime)
	pc.MethodPath = path
	c := testcluster.Start(t, testcluster.Options{Workers: 1, Prime: pc})
	testcluster.Submit(t, prime, 20)
	testcluster.WaitAnswered(t, prime, 20, c)
	c.Stop()
	testcluster.CheckReport(t, prime, 20)

	wrong := testcluster.Start(t, testcluster.Options{Workers: 1, Prime: testcluster.PrimeConfig(prime)}) // default path
	testutil.WaitUntil(t, "the refusal", func() bool { return strings.Contains(wrong.Log.String(), "check method_path") })
}

// TestJournalWriteFailure: when the journal cannot write a result (here:
// it was closed under the gateway, as a failed disk would refuse writes),
// the result is sent all the same. Prime delivers a transaction again
// only on a new stream, so a result held back would leave it unanswered
// for as long as the stream stays up.
func TestJournalWriteFailure(t *testing.T) {
	const n = 20
	prime := testcluster.StartPrime(t, primesim.Config{})
	c := testcluster.Start(t, testcluster.Options{Workers: 1, Prime: testcluster.PrimeConfig(prime)})
	testutil.WaitUntil(t, "the stream", func() bool { return c.Gateway.Stats().Connected })
	if err := c.Journal.Close(); err != nil {
		t.Fatal(err)
	}
	testcluster.Submit(t, prime, n)
	testcluster.WaitAnswered(t, prime, n, c)
	c.Stop()
	testcluster.CheckReport(t, prime, n)
	if st := c.Gateway.Stats(); st.JournalErrors != n || st.Journaled != 0 || st.Sent != n || st.Streams != 1 {
		t.Fatalf("want %d journal errors and %d sent on one stream: %+v", n, n, st)
	}
	if !strings.Contains(c.Log.String(), "cannot journal result") {
		t.Fatalf("journal failure not logged:\n%s", c.Log.Tail(2000))
	}
}
