package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/grid"
)

// TestStatus runs `gridmesh status` against two live grid nodes' stats
// endpoints, as a table and as JSON, and against a dead address.
func TestStatus(t *testing.T) {
	lns := make([]net.Listener, 2)
	hosts := make([]string, 2)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i], hosts[i] = ln, "http://"+ln.Addr().String()
	}
	var statsURLs []string
	var managers []*grid.Manager
	for i, ln := range lns {
		m, err := grid.NewManager(context.Background(), grid.Options{Local: hosts[i], Hosts: hosts, Secret: []byte("s")})
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		mux.Handle(grid.DefaultRoutePath, m.Handler())
		mux.Handle(grid.DefaultStatsPath, m.StatsHandler())
		if i == 0 { // node 0 also plays a worker with contract processes
			mux.HandleFunc(gateway.StatsPath, func(w http.ResponseWriter, _ *http.Request) {
				json.NewEncoder(w).Encode(gateway.NodeStats{
					Worker:    &gateway.WorkerStatus{Capacity: 8, Running: 3, Done: 42},
					Processes: &gateway.ProcessStats{Processes: 2, Running: 2, Starts: 3, Ended: 1},
				})
			})
		}
		srv := httptest.NewUnstartedServer(mux)
		srv.Listener.Close()
		srv.Listener = ln
		srv.Start()
		t.Cleanup(func() { m.Close(); srv.Close() })
		managers = append(managers, m)
		statsURLs = append(statsURLs, hosts[i])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, m := range managers {
		if err := m.WaitForConnect(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), append([]string{"status"}, statsURLs...), &out, &errOut); code != 0 {
		t.Fatalf("status exited %d: %s%s", code, out.String(), errOut.String())
	}
	for _, h := range hosts {
		if !strings.Contains(out.String(), h+": 1 of 1 peers connected") {
			t.Errorf("no summary line for %s in:\n%s", h, out.String())
		}
	}
	if !strings.Contains(out.String(), "connected") || !strings.Contains(out.String(), "PEER") {
		t.Errorf("no table in:\n%s", out.String())
	}
	if n := strings.Count(out.String(), "worker: running 3 of 8, done 42"); n != 1 {
		t.Errorf("worker counters shown %d times, want once (node 0 only):\n%s", n, out.String())
	}
	if !strings.Contains(out.String(), "contract processes: 2 of 2 up") {
		t.Errorf("no process pool line in:\n%s", out.String())
	}

	out.Reset()
	if code := run(context.Background(), []string{"status", "-json", statsURLs[0]}, &out, &errOut); code != 0 || !strings.Contains(out.String(), `"State": "connected"`) {
		t.Fatalf("status -json: exit %d:\n%s", code, out.String())
	}

	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead.Close()
	out.Reset()
	errOut.Reset()
	if code := run(context.Background(), []string{"status", "-timeout=2s", "http://" + dead.Addr().String()}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "did not answer") {
		t.Fatalf("dead node: exit %d, out %q, err %q", code, out.String(), errOut.String())
	}
	if code := run(context.Background(), []string{"status", "ftp://x"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "bad node URL") {
		t.Fatalf("bad URL: exit %d, err %q", code, errOut.String())
	}
}
