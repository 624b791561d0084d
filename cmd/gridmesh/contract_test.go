package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// contractDemoCommand runs the hidden contract-demo command in this test
// binary (see TestMainProcess): the command line and environment.
func contractDemoCommand(t *testing.T) ([]string, []string) {
	t.Helper()
	return testCommand(t, "contract-demo")
}

// TestDemoProcess runs the demo with contract processes, on the grid and
// directly.
func TestDemoProcess(t *testing.T) {
	command, env := contractDemoCommand(t)
	saved := demoProcessCommand
	demoProcessCommand = func() ([]string, []string, error) { return command, env, nil }
	t.Cleanup(func() { demoProcessCommand = saved })

	ctx, cancel := context.WithTimeout(context.Background(), gatewayTestTimeout)
	defer cancel()
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"demo", "-n", "300", "-process", "-processes", "2", "-direct"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	s := out.String()
	for _, want := range []string{"OK (every transaction answered exactly once)", "(process, capacity 64 each)", "contract processes 2: 2 running, 2 started, 0 ended", "grid/direct"} {
		if !strings.Contains(s, want) {
			t.Fatalf("output lacks %q:\n%s", want, s)
		}
	}
	if code := run(ctx, []string{"demo", "-exec", "-process"}, &out, &errOut); code != 1 {
		t.Fatalf("-exec -process: exit %d", code)
	}
}

// TestWorkerCommandProcessMode runs "gridmesh worker" in mode process
// (its contract: this binary's contract-demo command) and "gridmesh
// gateway" against a Prime simulator.
func TestWorkerCommandProcessMode(t *testing.T) {
	prime := startPrime(t)
	defer prime.Close()
	c := newTestCluster(t, 1)
	gwCfg := c.gatewayConfig(prime.Addr().String(), "reconnect_delay_seconds: 1\n")
	wkCfg := c.workerConfig(1, processWorker(t, 2, 4, "2s", "contract-demo"))

	runGatewayAndWorker(t, prime, "-config", gwCfg, wkCfg)
	r := prime.Report()
	if !r.OK() || r.ErrorResponses != 0 {
		t.Fatalf("report:\n%v", r)
	}
}
