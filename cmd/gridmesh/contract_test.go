package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// contractDemoCommand runs the hidden contract-demo command in this test
// binary (see TestMainProcess): the command line and environment.
func contractDemoCommand(t *testing.T) ([]string, []string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// A race-enabled binary sleeps 1 s at exit unless told not to.
	return []string{exe, "-test.run=^TestMainProcess$"}, []string{"GRIDMESH_TEST_ARGS=contract-demo", "GORACE=atexit_sleep_ms=0"}
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
	dir := t.TempDir()
	gw, wk := "http://"+freeAddr(t), "http://"+freeAddr(t)
	gridYAML := fmt.Sprintf("grid:\n  hosts: [%s, %s]\n  secret: s\n", gw, wk)
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	gwCfg := write("gateway.yaml", fmt.Sprintf("server_address: %s\nchain_id: c\nsmart_contract_id: sc\napi_key: k\nreconnect_delay_seconds: 1\njournal_path: %s\n%s  local: %s\n",
		prime.Addr(), filepath.Join(dir, "j.db"), gridYAML, gw))
	command, env := contractDemoCommand(t)
	wkCfg := write("worker.yaml", fmt.Sprintf("mode: process\ncommand: [%q, %q]\nprocess:\n  processes: 2\n  in_flight: 4\n  stop_grace: 2s\n  env: [%q, %q]\n%s  local: %s\n",
		command[0], command[1], env[0], env[1], gridYAML, wk))

	runGatewayAndWorker(t, prime, "-config", gwCfg, wkCfg)
	r := prime.Report()
	if !r.OK() || r.ErrorResponses != 0 {
		t.Fatalf("report:\n%v", r)
	}
}
