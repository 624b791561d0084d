package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/gateway/primesim"
	"github.com/gridmesh/gridmesh/grid"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 30 * time.Second

const (
	apiKey   = "test-key"
	chainID  = "chain-1"
	contract = "sc-1"
	secret   = "gateway test secret"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	tb.Cleanup(cancel)
	return ctx
}

// startPrime starts a simulator on loopback.
func startPrime(tb testing.TB, cfg primesim.Config) *primesim.Server {
	tb.Helper()
	cfg.APIKey, cfg.Contracts = apiKey, []string{contract}
	if cfg.ChainID == "" {
		cfg.ChainID = chainID
	}
	s, err := primesim.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// primeConfig is the gateway's Prime configuration for s, with fast
// reconnects.
func primeConfig(s *primesim.Server) gateway.PrimeConfig {
	return gateway.PrimeConfig{
		ServerAddress: s.Addr().String(), ChainID: chainID, SmartContractID: contract, APIKey: apiKey,
		ReconnectDelay: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	}
}

// echoContract answers every transaction with its payload's seq.
func echoContract(_ context.Context, txJSON string, env, _ map[string]string) (gateway.Output, error) {
	var tx struct {
		Payload json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal([]byte(txJSON), &tx); err != nil {
		return gateway.Output{}, err
	}
	return gateway.Output{ResultJSON: fmt.Sprintf(`{"payload":%s,"contract":%q}`, tx.Payload, env["SMART_CONTRACT_ID"]), OutputToChain: true}, nil
}

// logBuffer collects log lines for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// cluster is a gateway node and worker nodes on loopback.
type cluster struct {
	tb      testing.TB
	names   []string // gateway first
	gwNode  *gateway.Node
	workers []*gateway.Node
	ws      []*gateway.Worker // the workers served by workers, in order
	disp    *gateway.Dispatcher
	journal *gateway.Journal
	gw      *gateway.Gateway
	log     *logBuffer
	cancel  context.CancelFunc
	runErr  chan error
	stopped sync.Once
}

type clusterOptions struct {
	workers     int
	capacity    int
	contract    gateway.Contract
	contractFor func(i int) gateway.Contract // per worker; overrides contract
	drain       time.Duration
	journalPath string
	txTimeout   time.Duration
	prime       gateway.PrimeConfig
}

func gridOptions(local string, hosts []string) grid.Options {
	return grid.Options{
		Local: local, Hosts: hosts, Secret: []byte(secret),
		BackoffBase: 10 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		PingInterval: time.Second, PingTimeout: time.Second,
	}
}

func startCluster(tb testing.TB, o clusterOptions) *cluster {
	tb.Helper()
	if o.capacity == 0 {
		o.capacity = 4
	}
	if o.drain == 0 {
		o.drain = 5 * time.Second
	}
	if o.contract == nil {
		o.contract = echoContract
	}
	if o.journalPath == "" {
		o.journalPath = filepath.Join(tb.TempDir(), "journal.db")
	}
	c := &cluster{tb: tb, log: new(logBuffer), runErr: make(chan error, 1)}
	lns := make([]net.Listener, o.workers+1)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		lns[i] = ln
		c.names = append(c.names, "http://"+ln.Addr().String())
	}
	ctx := context.Background()
	for i := 1; i < len(lns); i++ {
		fn := o.contract
		if o.contractFor != nil {
			fn = o.contractFor(i - 1)
		}
		n, w, err := gateway.StartWorker(ctx, lns[i], gridOptions(c.names[i], c.names), gateway.WorkerOptions{Contract: fn, Capacity: o.capacity})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = n.Close() })
		c.workers = append(c.workers, n)
		c.ws = append(c.ws, w)
	}
	n, err := gateway.StartNode(ctx, lns[0], gridOptions(c.names[0], c.names))
	if err != nil {
		tb.Fatal(err)
	}
	c.gwNode = n
	c.disp = gateway.NewDispatcher(n.Manager, gateway.DispatcherOptions{ProbeInterval: 20 * time.Millisecond, Logger: c.log.logger()})
	c.journal, err = gateway.OpenJournal(o.journalPath, gateway.JournalOptions{Logger: c.log.logger()})
	if err != nil {
		tb.Fatal(err)
	}
	c.gw, err = gateway.New(gateway.Options{
		Prime: o.prime, Runner: c.disp, Journal: c.journal, TxTimeout: o.txTimeout,
		DrainTimeout: o.drain, Logger: c.log.logger(),
	})
	if err != nil {
		tb.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, testTimeout)
	defer wcancel()
	if err := c.disp.WaitForWorkers(wctx, o.workers); err != nil {
		tb.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	c.cancel = cancel
	go func() { c.runErr <- c.gw.Run(runCtx) }()
	tb.Cleanup(c.stop)
	return c
}

// stop shuts the gateway down gracefully and closes everything.
func (c *cluster) stop() {
	c.stopped.Do(func() {
		c.cancel()
		select {
		case err := <-c.runErr:
			if err != nil {
				c.tb.Errorf("gateway Run: %v", err)
			}
		case <-time.After(testTimeout):
			c.tb.Errorf("gateway Run did not return")
		}
		_ = c.disp.Close()
		_ = c.gwNode.Close()
		_ = c.journal.Close()
	})
}

// waitAnswered waits until s has n answers.
func waitAnswered(tb testing.TB, s *primesim.Server, n int, c *cluster) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := s.WaitAnswered(ctx, n); err != nil {
		if c != nil {
			tb.Logf("gateway stats %+v\nlogs:\n%s", c.gw.Stats(), tail(c.log.String(), 4000))
		}
		tb.Fatalf("%v\n%v", err, s.Report())
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// checkReport fails unless every one of n transactions was answered
// exactly once.
func checkReport(tb testing.TB, s *primesim.Server, n int) primesim.Report {
	tb.Helper()
	r := s.Report()
	if !r.OK() || r.Submitted != n {
		tb.Fatalf("want %d answered exactly once:\n%v", n, r)
	}
	return r
}

// waitUntil polls cond until it holds, failing the test after testTimeout.
func waitUntil(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// submit submits n transactions and returns their IDs.
func submit(tb testing.TB, s *primesim.Server, n int) []string {
	tb.Helper()
	ids := make([]string, n)
	for i := range ids {
		tx, err := s.NewTransaction(contract, i, n)
		if err != nil {
			tb.Fatal(err)
		}
		if ids[i], err = s.Submit(contract, tx); err != nil {
			tb.Fatal(err)
		}
	}
	return ids
}

// gate is a contract that blocks the transactions it is told to hold
// until released, and counts runs per transaction.
type gate struct {
	mu      sync.Mutex
	runs    map[string]int
	hold    func(txJSON string) bool
	started chan string
	release chan struct{}
}

func newGate(hold func(txJSON string) bool) *gate {
	return &gate{runs: make(map[string]int), hold: hold, started: make(chan string, 1024), release: make(chan struct{})}
}

func (g *gate) contract(ctx context.Context, txJSON string, env, secrets map[string]string) (gateway.Output, error) {
	var tx struct {
		Header struct {
			TxnID string `json:"txn_id"`
		} `json:"header"`
	}
	_ = json.Unmarshal([]byte(txJSON), &tx)
	g.mu.Lock()
	g.runs[tx.Header.TxnID]++
	g.mu.Unlock()
	if g.hold != nil && g.hold(txJSON) {
		g.started <- tx.Header.TxnID
		select {
		case <-g.release:
		case <-ctx.Done():
			return gateway.Output{}, ctx.Err()
		}
	}
	return echoContract(ctx, txJSON, env, secrets)
}

func (g *gate) runsOf(id string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.runs[id]
}

// recv waits for the next held transaction to start.
func (g *gate) recv(tb testing.TB) string {
	tb.Helper()
	select {
	case id := <-g.started:
		return id
	case <-time.After(testTimeout):
		tb.Fatal("timed out waiting for a held transaction to start")
		return ""
	}
}
