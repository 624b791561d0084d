package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/gateway/contract"
	"github.com/gridmesh/gridmesh/gateway/primesim"
	"github.com/gridmesh/gridmesh/internal/testcluster"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

// TestGatewayKilledRunsOnce kills the gateway (its node first, so its
// workers only see their sessions end) while its workers run
// transactions, and starts another: Prime delivers the transactions again,
// and the new gateway sends each to the worker that ran it, which answers
// it from its record (the runs finished before the new gateway came) or
// joins it to its run (they still run). Every transaction runs once and is
// answered once.
func TestGatewayKilledRunsOnce(t *testing.T) {
	for _, tc := range []struct {
		name         string
		releaseFirst bool // the runs finish before the new gateway starts
	}{
		{"answered from the record", true},
		{"joined to the run", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 6
			prime := testcluster.StartPrime(t, primesim.Config{})
			g := testcluster.NewGate(func(string) bool { return true })
			c := testcluster.Start(t, testcluster.Options{Workers: 2, Prime: testcluster.PrimeConfig(prime), Contract: g.Contract})
			ids := testcluster.Submit(t, prime, n)
			for range n {
				g.Recv(t)
			}
			c.KillGateway()
			if tc.releaseFirst {
				close(g.Release)
				done := func() uint64 { return c.Workers[0].Status().Done + c.Workers[1].Status().Done }
				deadline := time.Now().Add(testutil.Timeout)
				for done() < n && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
				if got := done(); got != n {
					for _, id := range ids {
						t.Logf("transaction %s: %d runs", id, g.RunsOf(id))
					}
					t.Logf("gateway logs:\n%s", c.Log.Tail(8000))
					t.Fatalf("workers recorded %d runs, want %d", got, n)
				}
			}
			c.StartGateway()
			if !tc.releaseFirst {
				close(g.Release)
			}
			testcluster.WaitAnswered(t, prime, n, c)
			c.Stop()
			r := testcluster.CheckReport(t, prime, n)
			for _, id := range ids {
				if runs := g.RunsOf(id); runs != 1 {
					t.Errorf("transaction %s ran %d times", id, runs)
				}
			}
			if r.ErrorResponses != 0 || r.Redelivered < n {
				t.Errorf("report:\n%v", r)
			}
			if got := c.Dispatcher.RoutedHome(); got != n {
				t.Errorf("%d transactions routed to the worker that ran them, want %d", got, n)
			}
			if got := c.Dispatcher.FromRecord(); got != n {
				t.Errorf("%d answered from the workers' records, want %d", got, n)
			}
			var fromRecord uint64
			for _, w := range c.Workers {
				fromRecord += w.Status().FromRecord
			}
			if fromRecord != n {
				t.Errorf("workers answered %d transactions from their records, want %d", fromRecord, n)
			}
		})
	}
}

// TestAllWorkersDown: with every worker gone for longer than the
// transaction timeout, Prime gets no answer at all (the gateway's or the
// grid's unavailability is never one); once workers are back, every
// transaction is answered once, with its result. Those that were running
// when their workers died ran again, and are counted so: each ran exactly
// twice, once on the old workers and once on the new. A worker closed
// while its node is still up runs nothing more (it advertises no
// capacity and refuses what it is sent), so a re-dispatch that reaches it
// is no third run.
func TestAllWorkersDown(t *testing.T) {
	const n = 4
	// Long enough that no held run reaches its deadline (and is answered
	// with it) before both workers are stopped on a loaded machine.
	const txTimeout = 2 * time.Second
	prime := testcluster.StartPrime(t, primesim.Config{})
	first := testcluster.NewGate(func(string) bool { return true })
	c := testcluster.Start(t, testcluster.Options{
		Workers: 2, Capacity: 2, Prime: testcluster.PrimeConfig(prime), Contract: first.Contract, TxTimeout: txTimeout,
	})
	ids := testcluster.Submit(t, prime, n)
	for range n {
		first.Recv(t)
	}
	c.StopWorker(0)
	c.StopWorker(1)
	time.Sleep(2 * txTimeout) // a timeout past every transaction's deadline
	if r := prime.Report(); r.Answered != 0 {
		t.Fatalf("Prime got answers while no worker was up:\n%v", r)
	}
	if st := c.Gateway.Stats(); st.Failed != 0 || st.Sent != 0 {
		t.Fatalf("gateway answered while no worker was up: %+v", st)
	}
	second := testcluster.NewGate(nil)
	c.StartWorker(0, second.Contract)
	c.StartWorker(1, second.Contract)
	testcluster.WaitAnswered(t, prime, n, c)
	c.Stop()
	r := testcluster.CheckReport(t, prime, n)
	if r.ErrorResponses != 0 {
		t.Fatalf("error answers:\n%v", r)
	}
	twice := 0
	for _, id := range ids {
		if first.RunsOf(id)+second.RunsOf(id) == 2 {
			twice++
		}
		if resp, _ := prime.Answer(testcluster.ContractID, id); !strings.Contains(resp.GetResultJson(), `"payload"`) {
			t.Errorf("answer for %s: %v", id, resp)
		}
	}
	if rerun := c.Dispatcher.Rerun(); rerun != uint64(twice) || twice != n {
		t.Errorf("%d transactions ran twice, %d counted as rerun; want %d both (each was running when its worker died)", twice, rerun, n)
		for _, id := range ids {
			t.Logf("transaction %s: %d runs on the first workers, %d on the second", id, first.RunsOf(id), second.RunsOf(id))
		}
		t.Logf("gateway logs:\n%s", c.Log.Tail(8000))
	}
	t.Logf("Prime: %d answered, %d errors; ran twice: %d of %d (counted: %d)", r.Answered, r.ErrorResponses, twice, n, c.Dispatcher.Rerun())
}

// TestResultTooLargeForGrid: a result larger than the grid carries in one
// message cannot be fetched from its worker, however often it is asked:
// Prime is answered with ErrTooLarge's error, once, and it is counted.
func TestResultTooLargeForGrid(t *testing.T) {
	prime := testcluster.StartPrime(t, primesim.Config{})
	huge := func(context.Context, string, map[string]string, map[string]string) (contract.Output, error) {
		return contract.Output{ResultJSON: `"` + strings.Repeat("x", 17<<20) + `"`}, nil
	}
	c := testcluster.Start(t, testcluster.Options{Workers: 1, Prime: testcluster.PrimeConfig(prime), Contract: huge})
	ids := testcluster.Submit(t, prime, 1)
	testcluster.WaitAnswered(t, prime, 1, c)
	c.Stop()
	testcluster.CheckReport(t, prime, 1)
	resp, _ := prime.Answer(testcluster.ContractID, ids[0])
	if !strings.Contains(resp.GetError(), "too large for the grid") || resp.GetResultJson() != "" {
		t.Fatalf("answer %.200v", resp)
	}
	if st := c.Gateway.Stats(); st.TooLarge != 1 || st.Failed != 1 || c.Dispatcher.Redispatched() != 0 {
		t.Fatalf("stats %+v, redispatched %d", st, c.Dispatcher.Redispatched())
	}
}

// TestLocalShutdownIsNoAnswer: a contract that a gateway's shutdown cut
// short (NewLocal: in the gateway's process) has no answer: nothing is
// journaled or sent, and Prime delivers it again.
func TestLocalShutdownIsNoAnswer(t *testing.T) {
	prime := testcluster.StartPrime(t, primesim.Config{})
	started := make(chan struct{}, 1)
	blocks := func(ctx context.Context, _ string, _, _ map[string]string) (contract.Output, error) {
		started <- struct{}{}
		<-ctx.Done()
		return contract.Output{}, ctx.Err()
	}
	l := startLocal(t, gateway.Options{Prime: testcluster.PrimeConfig(prime), Runner: gateway.NewLocal(blocks, 1), DrainTimeout: 50 * time.Millisecond}, nil)
	ids := testcluster.Submit(t, prime, 1)
	select {
	case <-started:
	case <-time.After(testutil.Timeout):
		t.Fatal("the contract did not start")
	}
	if err := l.stop(t); err != nil {
		t.Fatal(err)
	}
	if res, found, err := l.j.Get(ids[0]); found || err != nil {
		t.Fatalf("journaled %+v (%v) for a transaction the shutdown cut short", res, err)
	}
	if st := l.gw.Stats(); st.HandedBack != 1 || st.Sent != 0 || st.ContractErrors != 0 || st.InFlight != 0 {
		t.Fatalf("stats %+v", st)
	}
	if r := prime.Report(); r.Answered != 0 {
		t.Fatalf("Prime has answers:\n%v", r)
	}
}

// TestLinkCutRunsOnce cuts the connection between the gateway and a
// worker while the worker runs transactions. The runs go on; the gateway
// waits for the worker to come back (DispatcherOptions.HomeWait) and
// sends the transactions to it again, where they join their runs: each
// runs once, although another worker had room for them. With HomeWait
// off they go to that other worker at once and run twice, counted in
// Rerun.
func TestLinkCutRunsOnce(t *testing.T) {
	for _, tc := range []struct {
		name     string
		homeWait time.Duration
	}{
		{"waits for its worker", 0},
		{"no wait", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 4
			prime, g, c, ids, onCut := startHeld(t, n, tc.homeWait)
			// Worker 0 stays apart until the transactions went
			// somewhere: back to it, or on to worker 1.
			c.BlockLink(0, true)
			if cut := c.CutLink(0); cut == 0 {
				t.Fatal("no connection between the gateway and worker 0 to cut")
			}
			if tc.homeWait < 0 {
				for range onCut {
					g.Recv(t) // run again on worker 1
				}
				c.BlockLink(0, false)
			} else {
				time.Sleep(100 * time.Millisecond) // an outage, not a blink
				c.BlockLink(0, false)
				testutil.WaitUntil(t, "the transactions to go back to worker 0", func() bool {
					return c.Dispatcher.RoutedHome() == uint64(onCut)
				})
			}
			close(g.Release)
			testcluster.WaitAnswered(t, prime, n, c)
			c.Stop()
			if r := testcluster.CheckReport(t, prime, n); r.ErrorResponses != 0 {
				t.Errorf("report:\n%v", r)
			}
			twice := 0
			for _, id := range ids {
				switch runs := g.RunsOf(id); runs {
				case 1:
				case 2:
					twice++
				default:
					t.Errorf("transaction %s ran %d times", id, runs)
				}
			}
			want := 0
			if tc.homeWait < 0 {
				want = int(onCut)
			}
			if twice != want || c.Dispatcher.Rerun() != uint64(want) {
				t.Errorf("%d transactions ran twice, %d counted as rerun; want %d (%d were on the cut link)", twice, c.Dispatcher.Rerun(), want, onCut)
				t.Logf("gateway logs:\n%s", c.Log.Tail(8000))
			}
			if tc.homeWait >= 0 && (c.Dispatcher.FromRecord() != uint64(onCut) || c.Dispatcher.HomeGone() != 0) {
				t.Errorf("joined %d runs, %d homes gone; want %d and 0", c.Dispatcher.FromRecord(), c.Dispatcher.HomeGone(), onCut)
			}
		})
	}
}

// TestHomeGone: a worker cut off mid-run for good does not come back;
// after HomeWait its transactions go to the other worker and run again
// there, counted in HomeGone and Rerun.
func TestHomeGone(t *testing.T) {
	const n = 4
	const homeWait = 400 * time.Millisecond
	prime, g, c, _, onLost := startHeld(t, n, homeWait)
	lostAt := time.Now()
	c.BlockLink(0, true) // its runs go on, with no way back to the gateway
	if cut := c.CutLink(0); cut == 0 {
		t.Fatal("no connection between the gateway and worker 0 to cut")
	}
	for range onLost {
		g.Recv(t) // run again on worker 1
	}
	if waited := time.Since(lostAt); waited < homeWait {
		t.Errorf("transactions ran again elsewhere after %v, before HomeWait (%v)", waited, homeWait)
	}
	close(g.Release)
	testcluster.WaitAnswered(t, prime, n, c)
	c.BlockLink(0, false)
	c.Stop()
	if r := testcluster.CheckReport(t, prime, n); r.ErrorResponses != 0 {
		t.Errorf("report:\n%v", r)
	}
	if gone, rerun := c.Dispatcher.HomeGone(), c.Dispatcher.Rerun(); gone != uint64(onLost) || rerun != uint64(onLost) {
		t.Errorf("home gone %d, rerun %d; want %d each", gone, rerun, onLost)
		t.Logf("gateway logs:\n%s", c.Log.Tail(8000))
	}
}

// startHeld starts a cluster of two workers with room for n transactions
// each, submits n, and waits until all n run and are held; it returns how
// many run on worker 0 (some, not all).
func startHeld(t *testing.T, n int, homeWait time.Duration) (*primesim.Server, *testcluster.Gate, *testcluster.Cluster, []string, int) {
	t.Helper()
	prime := testcluster.StartPrime(t, primesim.Config{})
	g := testcluster.NewGate(func(string) bool { return true })
	c := testcluster.Start(t, testcluster.Options{
		Workers: 2, Capacity: n, Prime: testcluster.PrimeConfig(prime), Contract: g.Contract, HomeWait: homeWait,
	})
	ids := testcluster.Submit(t, prime, n)
	for range n {
		g.Recv(t)
	}
	on0 := c.Workers[0].Status().Running
	if on0 == 0 || on0 == n {
		t.Fatalf("worker 0 runs %d of %d transactions; want some on each worker", on0, n)
	}
	return prime, g, c, ids, on0
}
