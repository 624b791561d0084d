package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gridmesh/gridmesh/gateway/primesim"
)

// testCluster lays out the configuration files of a gateway and workers
// that a test runs as this command: a directory, the grid's host names
// (names[0] the gateway's, then the workers'), each node's operations
// port, and the grid section every node's file shares.
type testCluster struct {
	t     *testing.T
	dir   string
	names []string
	ops   []string // host:port of each node's operations port
	grid  string
}

func newTestCluster(t *testing.T, workers int) *testCluster {
	t.Helper()
	c := &testCluster{t: t, dir: t.TempDir()}
	addrs := freeAddrs(t, 2*(workers+1))
	for _, a := range addrs[:workers+1] {
		c.names = append(c.names, "http://"+a)
	}
	c.ops = addrs[workers+1:]
	c.grid = fmt.Sprintf("grid:\n  hosts: [%s]\n  secret: s\n", strings.Join(c.names, ", "))
	return c
}

// gatewayAddr is the host:port of the gateway's operations port.
func (c *testCluster) gatewayAddr() string { return c.ops[0] }

// journal is the gateway's journal file.
func (c *testCluster) journal() string { return filepath.Join(c.dir, "j.db") }

// gatewayConfig writes the gateway's file: Prime at primeAddr, the
// journal, the YAML lines of extra, the grid section. It returns its path.
func (c *testCluster) gatewayConfig(primeAddr, extra string) string {
	return c.write("gateway.yaml", 0, fmt.Sprintf("server_address: %s\nchain_id: c\nsmart_contract_id: sc\napi_key: k\njournal_path: %s\n%s",
		primeAddr, c.journal(), extra))
}

// workerConfig writes worker i's file (i from 1): the YAML lines of body,
// the grid section. It returns its path.
func (c *testCluster) workerConfig(i int, body string) string {
	return c.write(fmt.Sprintf("worker%d.yaml", i), i, body)
}

func (c *testCluster) write(name string, node int, body string) string {
	c.t.Helper()
	p := filepath.Join(c.dir, name)
	body += "ops_listen: " + c.ops[node] + "\n"
	if err := os.WriteFile(p, []byte(body+c.grid+"  local: "+c.names[node]+"\n"), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// testCommand returns the command and environment that run this test
// binary as `gridmesh args` (see TestMainProcess).
func testCommand(t *testing.T, args string) (command, env []string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// A race-enabled binary sleeps 1 s at exit unless told not to.
	return []string{exe, "-test.run=^TestMainProcess$"}, []string{"GRIDMESH_TEST_ARGS=" + args, "GORACE=atexit_sleep_ms=0"}
}

// processWorker returns the YAML of a process-mode worker whose contract
// processes run this test binary as `gridmesh args`.
func processWorker(t *testing.T, processes, inFlight int, stopGrace, args string) string {
	t.Helper()
	command, env := testCommand(t, args)
	return fmt.Sprintf("mode: process\ncommand: [%q, %q]\nprocess:\n  processes: %d\n  in_flight: %d\n  stop_grace: %s\n  env: [%q, %q]\n",
		command[0], command[1], processes, inFlight, stopGrace, env[0], env[1])
}

// processTest starts what a test of real processes needs: it skips the
// test in -short mode, and returns a running Prime simulator and a context
// bounded by gatewayTestTimeout, both ended when the test ends.
func processTest(t *testing.T) (*primesim.Server, context.Context) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts processes")
	}
	prime := startPrime(t)
	t.Cleanup(func() { prime.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), gatewayTestTimeout)
	t.Cleanup(cancel)
	return prime, ctx
}
