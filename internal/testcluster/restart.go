package testcluster

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway/contract"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

// KillGateway stops the gateway as a crash would, as far as its peers can
// tell: its node closes first, so workers see their sessions end without
// any call cancelled; then its Run is cut short (Abort) and its
// dispatcher and journal closed. StartGateway starts its successor.
func (c *Cluster) KillGateway() {
	c.tb.Helper()
	_ = c.GatewayNode.Close()
	c.Gateway.Abort()
	c.cancel()
	select {
	case <-c.runDone:
	case <-time.After(testutil.Timeout):
		c.tb.Fatal("gateway Run did not return after its node closed and Abort")
	}
	_ = c.Dispatcher.Close()
	_ = c.Journal.Close()
	c.stopped.Do(func() {}) // Stop has nothing left to stop
}

// StartGateway starts a new gateway on the killed one's address, journal
// and options, and waits for its workers.
func (c *Cluster) StartGateway() {
	c.tb.Helper()
	ln := relisten(c.tb, c.Names[0])
	c.startGateway(context.Background(), ln, c.opts)
}

// RestartWorker closes worker i (0-based) as a crash would (its runs are
// given up) and starts a new one on the same address, running fn.
func (c *Cluster) RestartWorker(i int, fn contract.Func) {
	c.tb.Helper()
	c.StopWorker(i)
	c.StartWorker(i, fn)
}

// StopWorker closes worker i (0-based): its runs are given up.
func (c *Cluster) StopWorker(i int) {
	_ = c.Workers[i].Close()
	_ = c.WorkerNodes[i].Close()
}

// StartWorker starts worker i (0-based) again on its address, running fn.
func (c *Cluster) StartWorker(i int, fn contract.Func) {
	c.tb.Helper()
	n, w := c.startWorker(relisten(c.tb, c.Names[i+1]), i+1, fn)
	c.WorkerNodes[i], c.Workers[i] = n, w
}

// relisten listens again on the address of the node named name, retrying
// while the old socket lingers.
func relisten(tb testing.TB, name string) net.Listener {
	tb.Helper()
	addr := strings.TrimPrefix(name, "http://")
	deadline := time.Now().Add(testutil.Timeout)
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			return ln
		}
		if time.Now().After(deadline) {
			tb.Fatalf("listen again on %s: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// CutLink closes the TCP connections between the gateway and worker i
// (0-based), as a network fault would, and returns how many it closed
// (0 if the two were not connected). Both nodes see their session end and
// connect again at once.
func (c *Cluster) CutLink(i int) int {
	return c.links.cut(c.Names[0], c.Names[i+1])
}

// BlockLink makes the nodes' dials between the gateway and worker i fail
// (on) or succeed again (off); with CutLink, the two stay apart until
// unblocked.
func (c *Cluster) BlockLink(i int, on bool) {
	c.links.block(c.Names[0], c.Names[i+1], on)
}
