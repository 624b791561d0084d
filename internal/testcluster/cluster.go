package testcluster

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/gateway/contract"
	"github.com/gridmesh/gridmesh/gateway/worker"
	"github.com/gridmesh/gridmesh/grid"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

// Cluster is a gateway node and worker nodes on loopback, the gateway
// running against a Prime.
type Cluster struct {
	tb          testing.TB
	Names       []string // node URLs, the gateway's first
	GatewayNode *grid.Node
	WorkerNodes []*grid.Node
	Workers     []*worker.Worker // served by WorkerNodes, in order
	Dispatcher  *gateway.Dispatcher
	Journal     *gateway.Journal
	Gateway     *gateway.Gateway
	Log         *testutil.LogBuffer // the gateway's, the dispatcher's and the journal's logs
	opts        Options
	cancel      context.CancelFunc
	runDone     chan struct{} // closed when Gateway.Run returned runErr
	runErr      error
	stopped     *sync.Once // made anew for each gateway
	links       links      // the connections the nodes dialed (CutLink)
}

// Options shape a Cluster. Only Prime is required.
type Options struct {
	Workers     int
	Capacity    int                       // per worker; default 4
	Contract    contract.Func             // default Echo
	ContractFor func(i int) contract.Func // per worker; overrides Contract
	Drain       time.Duration             // the gateway's; default 5 s
	JournalPath string                    // default: in the test's temporary directory
	TxTimeout   time.Duration
	Prime       gateway.PrimeConfig
	// Listed is how many workers (the first ones) the gateway lists in its
	// grid hosts at first; the others list the gateway and wait for it to
	// add them (grid.Manager.SetHosts). Default: all.
	Listed int
	// HomeWait is the dispatcher's (gateway.DispatcherOptions.HomeWait).
	HomeWait time.Duration
	// TracerProvider, if set, traces the gateway, every worker and their
	// grid nodes.
	TracerProvider trace.TracerProvider
}

// GridOptions are a test node's grid options: fast reconnects and pings.
// A pong may take 3 s: a session that ends because a loaded machine (-race
// beside other test binaries) answered a ping late is a fault no test here
// means to inject.
func GridOptions(local string, hosts []string) grid.Options {
	return grid.Options{
		Local: local, Hosts: hosts, Secret: []byte(Secret),
		BackoffBase: 10 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		PingInterval: time.Second, PingTimeout: 3 * time.Second,
	}
}

// gridOptions are GridOptions, traced to Options.TracerProvider.
func (c *Cluster) gridOptions(local string, hosts []string) grid.Options {
	o := GridOptions(local, hosts)
	o.TracerProvider = c.opts.TracerProvider
	o.NetDial = c.links.dialer(local)
	return o
}

// Start starts the cluster, waits until the gateway has every worker, and
// runs the gateway; Stop (at cleanup at the latest) drains and closes it.
func Start(tb testing.TB, o Options) *Cluster {
	tb.Helper()
	if o.Capacity == 0 {
		o.Capacity = 4
	}
	if o.Drain == 0 {
		o.Drain = 5 * time.Second
	}
	if o.Contract == nil {
		o.Contract = Echo
	}
	if o.JournalPath == "" {
		o.JournalPath = filepath.Join(tb.TempDir(), "journal.db")
	}
	c := &Cluster{tb: tb, Log: new(testutil.LogBuffer), opts: o}
	lns := listen(tb, o.Workers+1)
	for _, ln := range lns {
		c.Names = append(c.Names, "http://"+ln.Addr().String())
	}
	ctx := context.Background()
	for i := 1; i < len(lns); i++ {
		fn := o.Contract
		if o.ContractFor != nil {
			fn = o.ContractFor(i - 1)
		}
		n, w := c.startWorker(lns[i], i, fn)
		c.WorkerNodes = append(c.WorkerNodes, n)
		c.Workers = append(c.Workers, w)
	}
	c.startGateway(ctx, lns[0], o)
	tb.Cleanup(c.Stop)
	return c
}

// listen opens n loopback listeners, all open at once so no port comes
// twice.
func listen(tb testing.TB, n int) []net.Listener {
	lns := make([]net.Listener, n)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		lns[i] = ln
	}
	return lns
}

// startWorker starts worker node i (1-based among the names) on ln.
func (c *Cluster) startWorker(ln net.Listener, i int, fn contract.Func) (*grid.Node, *worker.Worker) {
	n, w, err := worker.Start(context.Background(), ln, c.gridOptions(c.Names[i], c.Names), worker.Options{Contract: fn, Capacity: c.opts.Capacity, TracerProvider: c.opts.TracerProvider})
	if err != nil {
		c.tb.Fatal(err)
	}
	c.tb.Cleanup(func() {
		_ = w.Close() // gives up runs still going, so the node's Close does not wait for them
		_ = n.Close()
	})
	return n, w
}

func (c *Cluster) startGateway(ctx context.Context, ln net.Listener, o Options) {
	tb := c.tb
	c.runDone, c.stopped = make(chan struct{}), new(sync.Once)
	listed := len(c.Names) - 1
	if o.Listed > 0 {
		listed = min(listed, o.Listed)
	}
	n, err := grid.StartNode(ctx, ln, c.gridOptions(c.Names[0], c.Names[:listed+1]))
	if err != nil {
		tb.Fatal(err)
	}
	c.GatewayNode = n
	c.Dispatcher = gateway.NewDispatcher(n.Manager, gateway.DispatcherOptions{ProbeInterval: 20 * time.Millisecond, HomeWait: o.HomeWait, Logger: c.Log.Logger()})
	c.Journal, err = gateway.OpenJournal(o.JournalPath, gateway.JournalOptions{Logger: c.Log.Logger()})
	if err != nil {
		tb.Fatal(err)
	}
	c.Gateway, err = gateway.New(gateway.Options{
		Prime: o.Prime, Runner: c.Dispatcher, Journal: c.Journal, TxTimeout: o.TxTimeout,
		DrainTimeout: o.Drain, Logger: c.Log.Logger(), TracerProvider: o.TracerProvider,
	})
	if err != nil {
		tb.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, testutil.Timeout)
	defer wcancel()
	if err := c.Dispatcher.WaitForWorkers(wctx, listed); err != nil {
		tb.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	c.cancel = cancel
	go func() {
		defer close(c.runDone)
		c.runErr = c.Gateway.Run(runCtx)
	}()
}

// Shutdown starts the gateway's graceful shutdown, as SIGTERM does: Run's
// context ends. RunDone tells when Run returned.
func (c *Cluster) Shutdown() { c.cancel() }

// RunDone is closed when the gateway's Run has returned RunErr.
func (c *Cluster) RunDone() <-chan struct{} { return c.runDone }

// RunErr is what the gateway's Run returned; call it after RunDone.
func (c *Cluster) RunErr() error {
	<-c.runDone
	return c.runErr
}

// Stop shuts the gateway down gracefully and closes the gateway's node,
// dispatcher and journal (the workers close at cleanup). It is
// idempotent.
func (c *Cluster) Stop() {
	c.stopped.Do(func() {
		c.cancel()
		select {
		case <-c.runDone:
			if c.runErr != nil {
				c.tb.Errorf("gateway Run: %v", c.runErr)
			}
		case <-time.After(testutil.Timeout):
			c.tb.Errorf("gateway Run did not return")
		}
		_ = c.Dispatcher.Close()
		_ = c.GatewayNode.Close()
		_ = c.Journal.Close()
	})
}
