package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gridmesh/gridmesh/gateway/primesim"
	pb "github.com/gridmesh/gridmesh/proto"
)

// waitOutput waits until the child has printed s.
func (c *child) waitOutput(t *testing.T, ctx context.Context, s string) {
	t.Helper()
	for !strings.Contains(c.stderr.String(), s) {
		select {
		case err := <-c.done:
			c.done <- err
			t.Fatalf("exited (%v) before printing %q:\n%s", err, s, c.stderr.String())
		case <-ctx.Done():
			t.Fatalf("did not print %q:\n%s", s, c.stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// exitCode waits for the child and returns its exit code.
func (c *child) exitCode(t *testing.T) int {
	t.Helper()
	err := c.wait(t)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee) && ee.Exited():
		return ee.ExitCode()
	}
	t.Fatalf("child ended with %v:\n%s", err, c.stderr.String())
	return -1
}

// primeStream opens a Run stream to addr with the demo's API key and
// contract and the given chain.
func primeStream(t *testing.T, ctx context.Context, addr, chain string) pb.SmartContractService_RunClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx = metadata.AppendToOutgoingContext(ctx, "x-api-key", demoAPIKey, "x-smart-contract-id", demoContract, "x-chain-id", chain)
	st, err := pb.NewSmartContractServiceClient(conn).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestPrimesimDefaultChain: the simulator serves the demo's chain by
// default and refuses a client naming another one.
func TestPrimesimDefaultChain(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), gatewayTestTimeout)
	defer cancel()
	addr := freeAddr(t)
	sim := startChild(t, ctx, "primesim", "-listen", addr)
	sim.waitOutput(t, ctx, "primesim serving")
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second) // a refusal is immediate
	defer rcancel()
	_, err := primeStream(t, rctx, addr, "c").Recv()
	if s, _ := status.FromError(err); s.Code() != codes.InvalidArgument ||
		s.Message() != `chain ID mismatch: the stream's x-chain-id is "c", this chain is "demo-chain"` {
		t.Errorf("a client of chain c got %v, want it refused naming both chains", err)
	}
	sim.term(t, "simulator")
	if out := strings.Join(strings.Fields(sim.stderr.String()), " "); !strings.Contains(out, "streams accepted 0 rejected 1") {
		t.Errorf("report after SIGTERM:\n%s", out)
	}
}

// TestPrimesimSIGTERMVerdict: SIGTERM during a load prints the report and
// exits by its verdict: 1 for a load not answered, 0 for one answered in
// full (still settling).
func TestPrimesimSIGTERMVerdict(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), gatewayTestTimeout)
	defer cancel()
	addrs := freeAddrs(t, 2)
	unanswered := startChild(t, ctx, "primesim", "-listen", addrs[0], "-count", "100000", "-rate", "100") // still generating
	answered := startChild(t, ctx, "primesim", "-listen", addrs[1], "-count", "20", "-settle", "10m")
	unanswered.waitOutput(t, ctx, "primesim serving")
	answered.waitOutput(t, ctx, "primesim serving")

	st := primeStream(t, ctx, addrs[1], primesim.DefaultChainID)
	for range 20 {
		req, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&pb.SmartContractResponse{TransactionId: req.GetTransactionId(), ResultJson: "{}"}); err != nil {
			t.Fatal(err)
		}
	}
	// The simulator ends the stream once it has read every answer.
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the half-close: %v", err)
	}

	for _, c := range []*child{unanswered, answered} {
		if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	if code, out := unanswered.exitCode(t), unanswered.stderr.String(); code != 1 ||
		!strings.Contains(out, "primesim report: FAILED") || !strings.Contains(out, "stopped by a signal with 0 of ") ||
		strings.Contains(out, "context canceled") {
		t.Errorf("unanswered load: exit %d, want 1 with the report and its verdict:\n%s", code, out)
	}
	if code, out := answered.exitCode(t), answered.stderr.String(); code != 0 || !strings.Contains(out, "primesim report: OK") {
		t.Errorf("answered load: exit %d, want 0 with the report:\n%s", code, out)
	}
}

// TestProcessesKill9Primesim runs the simulator, the gateway and two
// workers as separate processes and kills the simulator with kill -9 in
// the middle of a load, with a loss window: it forgets the answers of its
// last moments. Restarted on its state file, it delivers again what has
// no answer there, the gateway answers (from its journal what it ran
// already), the simulator generates the rest of the load, and its report
// must say every transaction was answered exactly once.
func TestProcessesKill9Primesim(t *testing.T) {
	const (
		n    = 1200
		rate = 200 // transactions per second
	)
	if testing.Short() {
		t.Skip("starts processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), gatewayTestTimeout)
	defer cancel()
	cl := newTestCluster(t, 2)
	primeAddr := freeAddr(t)
	primeArgs := []string{"primesim", "-listen", primeAddr, "-api-key", "k", "-contracts", "sc", "-chain-id", "c",
		"-state", filepath.Join(cl.dir, "prime.db"), "-commit-interval", "20ms", "-loss-window", "300ms",
		"-count", strconv.Itoa(n), "-rate", strconv.Itoa(rate), "-wait", "40s"}
	first := startChild(t, ctx, primeArgs...)
	first.waitOutput(t, ctx, "primesim serving")
	var workers []*child
	for i := 1; i <= 2; i++ {
		cfg := cl.workerConfig(i, processWorker(t, 2, 16, "2s", "contract-slow -delay 20ms"))
		workers = append(workers, startChild(t, ctx, "worker", "-config", cfg))
	}
	gw := startChild(t, ctx, "gateway", "-config",
		cl.gatewayConfig(primeAddr, "reconnect_delay_seconds: 1\nmax_backoff_seconds: 2\ndrain_timeout: 10s\n"))

	// Kill the simulator while answers flow.
	for {
		st, err := scrapeStats(ctx, cl.gatewayAddr())
		if err == nil && st.Gateway.Sent >= n/3 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("gateway did not answer %d: %v\n%s", n/3, err, gw.stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.wait(t) // "signal: killed"

	second := startChild(t, ctx, primeArgs...)
	code, out := second.exitCode(t), second.stderr.String()
	t.Logf("the restarted simulator:\n%s", out)
	if code != 0 {
		t.Fatalf("restarted simulator exit %d; gateway:\n%s", code, gw.stderr.String())
	}
	m := regexp.MustCompile(`(\d+) transactions recovered, (\d+) of them unanswered`).FindStringSubmatch(out)
	if m == nil || m[2] == "0" {
		t.Errorf("the restarted simulator found no unanswered transactions in its state file: %v", m)
	}
	// Only whitespace separates the report's columns.
	report := strings.Join(strings.Fields(out), " ")
	for _, want := range []string{"primesim report: OK", fmt.Sprintf("submitted %d", n), fmt.Sprintf("answered %d", n), "answered more than once 0"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if st, err := scrapeStats(ctx, cl.gatewayAddr()); err == nil {
		g := st.Gateway
		t.Logf("gateway: received %d, ran %d, from journal %d, duplicates %d, sent %d, streams %d",
			g.Received, g.Started, g.FromJournal, g.Duplicates, g.Sent, g.Streams)
	}
	for _, c := range append([]*child{gw}, workers...) {
		c.term(t, "process")
	}
}
