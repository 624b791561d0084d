package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/gateway/contract"
	"github.com/gridmesh/gridmesh/gateway/primesim"
	"github.com/gridmesh/gridmesh/internal/ops"
)

func init() {
	hiddenCommands = append(hiddenCommands, command{"contract-slow", "the demo's contract as a process, each answer delayed (tests only)", runContractSlow})
}

// runContractSlow is the demo's contract served as a process whose every
// answer takes -delay, so that a test can find transactions in flight.
func runContractSlow(ctx context.Context, args []string, out io.Writer) error {
	fs := newFlags("contract-slow", out)
	delay := fs.Duration("delay", 50*time.Millisecond, "time each transaction takes")
	runs := fs.String("runs", "", "append each transaction's ID to this `file` as its run starts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var runLog *os.File
	if *runs != "" {
		f, err := os.OpenFile(*runs, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		runLog = f
	}
	return contract.ServeProcess(ctx, os.Stdin, out, func(ctx context.Context, txJSON string, env, secrets map[string]string) (contract.Output, error) {
		if runLog != nil {
			var tx struct {
				Header struct {
					TxnID string `json:"txn_id"`
				} `json:"header"`
			}
			_ = json.Unmarshal([]byte(txJSON), &tx)
			if _, err := runLog.WriteString(tx.Header.TxnID + "\n"); err != nil { // one O_APPEND write: lines never interleave
				return contract.Output{}, err
			}
		}
		t := time.NewTimer(*delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return contract.Output{}, ctx.Err()
		}
		return demoContractFunc(ctx, txJSON, env, secrets)
	})
}

// primeProxy forwards TCP connections to Prime. blackhole makes the
// connections open now drop everything the gateway writes (its responses
// are "sent" but never reach Prime) while Prime's requests still flow;
// connections opened later are forwarded normally.
type primeProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  map[*proxyConn]struct{}
	wg     sync.WaitGroup
}

type proxyConn struct {
	client, server net.Conn
	drop           atomic.Bool
}

func startProxy(t *testing.T, target string) *primeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &primeProxy{ln: ln, target: target, conns: make(map[*proxyConn]struct{})}
	p.wg.Add(1)
	go p.acceptLoop()
	t.Cleanup(p.close)
	return p
}

func (p *primeProxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.forward(c)
	}
}

func (p *primeProxy) forward(c net.Conn) {
	defer p.wg.Done()
	s, err := net.DialTimeout("tcp", p.target, time.Second)
	if err != nil {
		c.Close()
		return
	}
	pc := &proxyConn{client: c, server: s}
	p.mu.Lock()
	p.conns[pc] = struct{}{}
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { // gateway → Prime, unless dropped
		defer close(done)
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 && !pc.drop.Load() {
				if _, werr := s.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		s.Close()
		c.Close()
	}()
	_, _ = io.Copy(c, s) // Prime → gateway
	c.Close()
	s.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, pc)
	p.mu.Unlock()
}

func (p *primeProxy) blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pc := range p.conns {
		pc.drop.Store(true)
	}
}

func (p *primeProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for pc := range p.conns {
		pc.client.Close()
		pc.server.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

type dispatchStats struct{ *gateway.DispatchStats }

// running returns how many transactions run on the workers.
func (d dispatchStats) running() int {
	if d.DispatchStats == nil {
		return -1
	}
	n := 0
	for _, w := range d.Workers {
		n += w.Running
	}
	return n
}

// get returns the body of a GET of u.
func get(t *testing.T, ctx context.Context, u string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", u, resp.Status, err)
	}
	return string(body)
}

// scrapeStats reads a gateway's stats from its operations port
// (ops.StatsPath).
func scrapeStats(ctx context.Context, hostport string) (gateway.NodeStats, error) {
	var st nodeStats
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+hostport+ops.StatsPath, nil)
	if err != nil {
		return gateway.NodeStats{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return gateway.NodeStats{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return gateway.NodeStats{}, fmt.Errorf("GET %s: %s", req.URL, resp.Status)
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	if err == nil && st.Gateway == nil {
		err = fmt.Errorf("GET %s: no gateway stats", req.URL)
	}
	return gateway.NodeStats{Gateway: st.Gateway, Dispatch: st.Dispatch}, err
}

// TestProcessesKill9Gateway runs Prime (in this process, behind a TCP
// proxy), two workers and the gateway as separate processes and kills the
// gateway with kill -9 three times while 3,000 transactions arrive at a
// steady rate, each time in another state, and restarts it on the same
// configuration and journal:
//
//  1. in the middle of the run: transactions running on workers, results
//     being journaled and sent;
//  2. after its responses stopped reaching Prime (the proxy drops what the
//     gateway writes): results journaled and sent as far as the gateway
//     knows, which Prime never received;
//  3. while Prime is down: results journaled and waiting for a stream.
//
// Prime must end up with every transaction answered exactly once, with the
// contract's true result; the results of cases 2 and 3 must come from the
// journal.
func TestProcessesKill9Gateway(t *testing.T) {
	const (
		n     = 3000
		rate  = 300 // transactions per second
		delay = 100 * time.Millisecond
	)
	prime, ctx := processTest(t)
	primeAddr := prime.Addr().String()
	proxy := startProxy(t, primeAddr)

	cl := newTestCluster(t, 2)
	gwAddr, names := cl.gatewayAddr(), cl.names
	gwCfg := cl.gatewayConfig(proxy.ln.Addr().String(), "reconnect_delay_seconds: 1\ndrain_timeout: 10s\ntransaction_timeout: 30s\n")
	runLog := filepath.Join(t.TempDir(), "runs")
	for i := 1; i <= 2; i++ {
		cfg := cl.workerConfig(i, processWorker(t, 2, 16, "2s", fmt.Sprintf("contract-slow -delay %v -runs %s", delay, runLog)))
		startChild(t, ctx, "worker", "-config", cfg)
	}
	var err error

	var (
		instances    []*child
		stats        []gateway.Stats // each instance's last scrape
		lastDispatch dispatchStats   // the last scrape's
	)
	startGateway := func() *child {
		c := startChild(t, ctx, "gateway", "-config", gwCfg)
		instances = append(instances, c)
		stats = append(stats, gateway.Stats{})
		return c
	}
	// scrape returns the current gateway instance's stats, waiting until
	// it serves them.
	scrape := func() gateway.Stats {
		t.Helper()
		for {
			st, err := scrapeStats(ctx, gwAddr)
			if err == nil {
				stats[len(stats)-1] = *st.Gateway
				lastDispatch = dispatchStats{st.Dispatch}
				return *st.Gateway
			}
			if ctx.Err() != nil {
				t.Fatalf("gateway stats: %v\n%s", err, instances[len(instances)-1].stderr.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			if ctx.Err() != nil {
				t.Fatalf("timed out waiting for %s\n%v\ngateway:\n%s", what, prime.Report(), instances[len(instances)-1].stderr.String())
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	kill := func() {
		t.Helper()
		c := instances[len(instances)-1]
		if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = c.wait(t) // "signal: killed"
	}
	answered := func(at int) func() bool { return func() bool { return prime.Report().Answered >= at } }

	// The load: n transactions at a steady rate, kept to check the answers.
	txs := make([]primesim.Transaction, n)
	for i := range txs {
		if txs[i], err = prime.NewTransaction("sc", i, n); err != nil {
			t.Fatal(err)
		}
	}
	loadDone := make(chan error, 1)
	startGateway()
	go func() {
		start := time.Now()
		tick := time.NewTimer(0)
		defer tick.Stop()
		for i, tx := range txs {
			tick.Reset(time.Until(start.Add(time.Duration(i) * time.Second / rate)))
			select {
			case <-tick.C:
			case <-ctx.Done():
				loadDone <- ctx.Err()
				return
			}
			if _, err := prime.Submit("sc", tx); err != nil {
				loadDone <- err
				return
			}
		}
		loadDone <- nil
	}()

	// 1: mid-run.
	waitFor("answers", answered(n/5))
	scrape()
	kill()
	startGateway()

	// 2: responses lost between the gateway and Prime.
	waitFor("answers", answered(2*n/5))
	scrape()
	proxy.blackhole()
	lostFrom := scrape().Sent // sent from now on: never reaches Prime
	waitFor("responses sent into the void", func() bool { return scrape().Sent >= lostFrom+20 })
	lost := scrape().Sent - lostFrom
	kill()
	startGateway()

	// 3: Prime down; results journaled, waiting for a stream.
	waitFor("answers", answered(3*n/5))
	scrape()
	prime.Pause()
	journaledFrom := scrape().Journaled // journaled from now on: not sent
	var unsent uint64
	waitFor("results journaled while Prime is down, nothing running", func() bool {
		st := scrape()
		unsent = st.Journaled - journaledFrom
		return !st.Connected && unsent >= 1 && lastDispatch.running() == 0
	})
	kill()
	if err := prime.Start(primeAddr); err != nil {
		t.Fatal(err)
	}
	last := startGateway()

	if err := <-loadDone; err != nil {
		t.Fatal(err)
	}
	if err := prime.WaitAnswered(ctx, n); err != nil {
		t.Fatalf("%v\n%v\ngateway:\n%s", err, prime.Report(), last.stderr.String())
	}
	scrape()
	// The same counters in the Prometheus text format, from the gateway
	// and from a worker (mode process: its pool's counters too).
	for _, c := range []struct {
		host, path string
		want       []string
	}{
		{gwAddr, ops.MetricsPath, []string{"gridmesh_gateway_from_journal_total ", "gridmesh_gateway_worker_running{worker=\"" + names[1] + "\"} "}},
		{cl.ops[1], ops.MetricsPath, []string{"gridmesh_worker_capacity 32", "gridmesh_worker_processes_running 2"}},
	} {
		body := get(t, ctx, "http://"+c.host+c.path)
		for _, want := range c.want {
			if !strings.Contains(body, "\n"+want) {
				t.Errorf("metrics of %s lack %q:\n%s", c.host, want, body)
			}
		}
	}
	last.term(t, "gateway")

	r := prime.Report()
	for i, st := range stats {
		t.Logf("gateway %d: received %d, ran %d, from journal %d, duplicates %d, journaled %d, sent %d, streams %d",
			i+1, st.Received, st.Started, st.FromJournal, st.Duplicates, st.Journaled, st.Sent, st.Streams)
	}
	t.Logf("kill 2: %d responses sent after Prime stopped hearing the gateway; kill 3: %d results journaled while Prime was down", lost, unsent)
	t.Logf("prime: delivered %d (redelivered %d), answered %d, latency p50 %v p99 %v max %v",
		r.Delivered, r.Redelivered, r.Answered, r.LatencyP50, r.LatencyP99, r.LatencyMax)
	if !r.OK() || r.Submitted != n || r.ErrorResponses != 0 {
		t.Fatalf("report:\n%v", r)
	}
	// Answered from the journal, as they must be: the responses Prime never
	// got (kill 2) by the third gateway, the results journaled while Prime
	// was down (kill 3) by the fourth. The last scrape of each may miss
	// the final few, so these are lower bounds checked on exact counts
	// taken before each kill.
	// One Send may have been under way when the proxy started dropping.
	if got := stats[2].FromJournal; got+1 < lost {
		t.Errorf("gateway 3 answered %d from the journal, want at least the %d responses Prime never received (less one)", got, lost)
	}
	if got := stats[3].FromJournal; got < unsent {
		t.Errorf("gateway 4 answered %d from the journal, want at least the %d results journaled while Prime was down", got, unsent)
	}
	var fromJournal uint64
	for _, st := range stats {
		fromJournal += st.FromJournal
	}
	if fromJournal > uint64(r.Redelivered) {
		t.Errorf("%d answers from the journal, but Prime redelivered only %d", fromJournal, r.Redelivered)
	}
	// The journal holds every result, once.
	j, err := gateway.OpenJournal(cl.journal(), gateway.JournalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := j.Len(); got != n {
		t.Errorf("journal holds %d results, want %d", got, n)
	}
	_ = j.Close()
	// Every answer is the contract's own result for that transaction,
	// whether computed once, again after a kill, or read from the journal.
	for _, tx := range txs {
		want, err := demoContractFunc(ctx, tx.JSON, tx.EnvVars, tx.Secrets)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := prime.Answer("sc", tx.ID)
		if !ok || got.GetResultJson() != want.ResultJSON || !got.GetOutputToChain() {
			t.Fatalf("transaction %s answered %v, want %s", tx.ID, got, want.ResultJSON)
		}
	}
	// Only the gateway died, three times: the workers joined every
	// transaction Prime delivered again to its run, or answered it from
	// their record. Each ran once.
	runs := countRuns(t, runLog)
	twice := 0
	for _, tx := range txs {
		switch n := runs[tx.ID]; {
		case n == 0:
			t.Errorf("transaction %s never ran", tx.ID)
		case n > 1:
			twice++
			if twice <= 5 {
				t.Errorf("transaction %s ran %d times", tx.ID, n)
			}
		}
	}
	t.Logf("executions: %d transactions, %d runs, %d ran more than once", len(txs), sum(runs), twice)
}

// countRuns reads a contract-slow -runs file: runs per transaction ID.
func countRuns(t *testing.T, path string) map[string]int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	runs := make(map[string]int)
	for _, id := range strings.Fields(string(data)) {
		runs[id]++
	}
	return runs
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
