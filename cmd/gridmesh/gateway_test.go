package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/gateway/primesim"
	"github.com/gridmesh/gridmesh/grid"
)

// gatewayTestTimeout bounds every wait in these tests.
const gatewayTestTimeout = 60 * time.Second

func freeAddr(t *testing.T) string {
	t.Helper()
	return freeAddrs(t, 1)[0]
}

// freeAddrs is n distinct free loopback addresses: the listeners stay open
// until all n are chosen, so the kernel cannot hand out one port twice.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addrs[i] = ln.Addr().String()
	}
	return addrs
}

// startPrime starts a Prime simulator on loopback serving contract "sc"
// of chain "c" with API key "k"; the caller closes it.
func startPrime(t *testing.T) *primesim.Server {
	t.Helper()
	prime, err := primesim.New(primesim.Config{APIKey: "k", Contracts: []string{"sc"}, ChainID: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if err := prime.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	return prime
}

// runGatewayAndWorker runs "gridmesh worker" and "gridmesh gateway" with
// the given configuration flag and files, has prime send 100 transactions,
// waits until all are answered, then stops both as a signal would and
// checks that both exit 0.
func runGatewayAndWorker(t *testing.T, prime *primesim.Server, configFlag, gwCfg, wkCfg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), gatewayTestTimeout)
	defer cancel()
	stopCtx, stop := context.WithCancel(ctx)
	defer stop()
	type result struct {
		code int
		out  string
	}
	start := func(args ...string) chan result {
		ch := make(chan result, 1)
		go func() {
			var out, errOut bytes.Buffer
			code := run(stopCtx, args, &out, &errOut)
			ch <- result{code, out.String() + errOut.String()}
		}()
		return ch
	}
	wkDone := start("worker", configFlag, wkCfg)
	gwDone := start("gateway", configFlag, gwCfg)
	if err := prime.Generate(ctx, "sc", 100, 0); err != nil {
		t.Fatal(err)
	}
	werr := prime.WaitAnswered(ctx, 100)
	stop()
	for _, ch := range []chan result{gwDone, wkDone} {
		select {
		case r := <-ch:
			if r.code != 0 {
				t.Errorf("exit %d: %s", r.code, r.out)
			}
		case <-ctx.Done():
			t.Fatal("command did not stop")
		}
	}
	if werr != nil {
		t.Fatal(werr)
	}
}

// TestGatewayAndWorkerCommands runs "gridmesh worker" and "gridmesh
// gateway" from YAML files against a Prime simulator, then stops both as
// a signal would.
func TestGatewayAndWorkerCommands(t *testing.T) {
	prime := startPrime(t)
	defer prime.Close()
	c := newTestCluster(t, 1)
	gwCfg := c.gatewayConfig(prime.Addr().String(), "reconnect_delay_seconds: 1\n")
	wkCfg := c.workerConfig(1, "command: [sh, -c, 'cat >/dev/null; echo \"{\\\"ok\\\":true}\"']\ncapacity: 4\n")

	runGatewayAndWorker(t, prime, "--config", gwCfg, wkCfg)
	if r := prime.Report(); !r.OK() {
		t.Fatalf("report:\n%v", r)
	}
}

func TestGatewayConfigError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(p, []byte("server_address: x:1\nchain_id: c\nsmart_contract_id: sc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"gateway", "-config", p}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "api_key is required") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
}

func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), gatewayTestTimeout)
	defer cancel()
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"demo", "-n", "300", "-direct"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	if s := out.String(); !strings.Contains(s, "OK (every transaction answered exactly once)") || !strings.Contains(s, "grid/direct") {
		t.Fatalf("output:\n%s", s)
	}
}

// TestWorkerCommandFirstProbe: "gridmesh worker" has its handlers before
// its node dials or accepts a gateway, so a dispatcher that probes a peer
// once an hour finds the worker on its first probe. Both dial sides.
func TestWorkerCommandFirstProbe(t *testing.T) {
	for _, workerDials := range []bool{false, true} {
		t.Run(fmt.Sprintf("worker dials %v", workerDials), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), gatewayTestTimeout)
			defer cancel()
			gwLn, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			gwName, wkName := "http://"+gwLn.Addr().String(), "http://"+freeAddr(t)
			for grid.ShouldDial(wkName, gwName) != workerDials {
				wkName = "http://" + freeAddr(t)
			}
			hosts := []string{gwName, wkName}
			node, err := grid.StartNode(ctx, gwLn, grid.Options{Local: gwName, Hosts: hosts, Secret: []byte("s")})
			if err != nil {
				t.Fatal(err)
			}
			defer node.Close()
			disp := gateway.NewDispatcher(node.Manager, gateway.DispatcherOptions{ProbeInterval: time.Hour, MaxProbeInterval: time.Hour})
			defer disp.Close()

			cfg := filepath.Join(t.TempDir(), "worker.yaml")
			if err := os.WriteFile(cfg, []byte(fmt.Sprintf("command: [cat]\ncapacity: 2\ngrid:\n  hosts: [%s, %s]\n  secret: s\n  local: %s\n",
				gwName, wkName, wkName)), 0o600); err != nil {
				t.Fatal(err)
			}
			wctx, stop := context.WithCancel(ctx)
			defer stop()
			done := make(chan string, 1)
			go func() {
				var out, errOut bytes.Buffer
				code := run(wctx, []string{"worker", "-config", cfg}, &out, &errOut)
				done <- fmt.Sprintf("exit %d: %s%s", code, out.String(), errOut.String())
			}()
			if err := disp.WaitForWorkers(ctx, 1); err != nil {
				stop()
				t.Fatalf("the first probe did not find the worker: %v\n%s", err, <-done)
			}
			stop()
			if r := <-done; !strings.HasPrefix(r, "exit 0") {
				t.Fatal(r)
			}
		})
	}
}
