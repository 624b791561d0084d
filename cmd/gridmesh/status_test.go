package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/gateway/worker"
	"github.com/gridmesh/gridmesh/grid"
	"github.com/gridmesh/gridmesh/internal/ops"
	"github.com/gridmesh/gridmesh/internal/testcerts"
	"github.com/gridmesh/gridmesh/internal/tlsfiles"
)

// TestStatus runs `gridmesh status` against two live grid nodes'
// operations ports, as a table and as JSON, and against a dead address.
// Node 0's port is HTTPS (-cacert) behind a token (-token-file).
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
	dir := t.TempDir()
	certs := testcerts.NewCA(t, "ops CA").WriteFiles(t, dir, "ops", "127.0.0.1")
	tlsFiles, err := tlsfiles.Load(tlsfiles.Files{Cert: certs.Cert, Key: certs.Key}, tlsfiles.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("ops-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var statsURLs []string
	var managers []*grid.Manager
	for i, ln := range lns {
		node, err := grid.StartNode(context.Background(), ln, grid.Options{Local: hosts[i], Hosts: hosts, Secret: []byte("s")})
		if err != nil {
			t.Fatal(err)
		}
		m := node.Manager
		// Node 0 also plays a worker with contract processes, node 1 a
		// gateway.
		parts := nodeStats{
			Worker:    &worker.Status{Capacity: 8, Running: 3, Done: 42, Refused: 2, Draining: true, ContractErrors: 50, ContractTimeouts: 3},
			Processes: &worker.ProcessStats{Processes: 2, Running: 2, Starts: 3, Ended: 1, Cancelled: 4},
		}
		opts := ops.Options{Listen: "127.0.0.1:0", Token: "ops-token", TLSConfig: tlsFiles.ServerConfig()}
		scheme := "https://"
		if i == 1 {
			parts = nodeStats{
				Gateway:  &gateway.Stats{Received: 7, Sent: 6, Connected: true, Journaled: 6, MarksPending: 9, MarksDropped: 11},
				Dispatch: &gateway.DispatchStats{Redispatched: 1, Workers: []gateway.WorkerStats{{Host: hosts[0], Up: true, Capacity: 8, Running: 3, Done: 5}}},
			}
			opts = ops.Options{Listen: "127.0.0.1:0"}
			scheme = "http://"
		}
		opts.Stats = func() any {
			st := parts
			gs := m.Stats()
			st.Grid = &gs
			return st
		}
		srv, err := ops.Listen(opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Close(); _ = node.Close() })
		managers = append(managers, m)
		statsURLs = append(statsURLs, scheme+srv.Addr().String())
	}
	auth := []string{"-cacert", certs.CA, "-token-file", tokenFile}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, m := range managers {
		if err := m.WaitForConnect(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), append(append([]string{"status"}, auth...), statsURLs...), &out, &errOut); code != 0 {
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
	if n := strings.Count(out.String(), "worker: running 3 of 8, done 42, refused 2, draining"); n != 1 {
		t.Errorf("worker counters shown %d times, want once (node 0 only):\n%s", n, out.String())
	}
	if !strings.Contains(out.String(), "contract errors 50, timeouts 3") {
		t.Errorf("no contract failure counters in:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "contract processes: 2 of 2 up") || !strings.Contains(out.String(), ", 4 cancelled") {
		t.Errorf("no process pool line, or no cancels in it:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "journal: 6 written, 0 write errors, 9 sent marks pending, 11 dropped") {
		t.Errorf("no journal line in:\n%s", out.String())
	}

	if !strings.Contains(out.String(), "gateway: prime connected true, received 7") || !strings.Contains(out.String(), "worker "+hosts[0]+": up true, running 3 of 8, done 5") {
		t.Errorf("no gateway lines in:\n%s", out.String())
	}

	// -json: one object per node with the grid's and the gateway parts'
	// stats, under the documented names.
	out.Reset()
	if code := run(context.Background(), append(append([]string{"status", "-json"}, auth...), statsURLs[0]), &out, &errOut); code != 0 || !strings.Contains(out.String(), `"state": "connected"`) {
		t.Fatalf("status -json: exit %d:\n%s", code, out.String())
	}
	objs := decodeStatusJSON(t, out.Bytes())
	if len(objs) != 1 {
		t.Fatalf("status -json of one node printed %d objects:\n%s", len(objs), out.String())
	}
	var st nodeStatus
	if err := json.Unmarshal(objs[0], &st); err != nil {
		t.Fatal(err)
	}
	if st.URL != statsURLs[0]+ops.StatsPath || st.Grid == nil || st.Grid.Local != hosts[0] || st.Grid.Connected != 1 ||
		st.Worker == nil || st.Worker.Done != 42 || st.Worker.Refused != 2 || !st.Worker.Draining ||
		st.Processes == nil || st.Processes.Starts != 3 || st.Gateway != nil || st.Dispatch != nil {
		t.Errorf("status -json of the worker node:\n%s", out.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"status", "-json", statsURLs[1]}, &out, &errOut); code != 0 {
		t.Fatalf("status -json: exit %d:\n%s", code, out.String())
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(out.Bytes(), &keys); err != nil {
		t.Fatalf("status -json of one node is not one JSON object: %v\n%s", err, out.String())
	}
	for _, k := range []string{"url", "grid", "gateway", "dispatch"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("status -json of the gateway node lacks %q:\n%s", k, out.String())
		}
	}
	for _, k := range []string{"error", "worker", "processes"} {
		if _, ok := keys[k]; ok {
			t.Errorf("status -json of the gateway node has %q:\n%s", k, out.String())
		}
	}
	if !strings.Contains(string(keys["gateway"]), `"received": 7`) || !strings.Contains(string(keys["dispatch"]), `"redispatched": 1`) {
		t.Errorf("gateway counters missing:\n%s", out.String())
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
	// With -json a dead node is an object too, with its error.
	out.Reset()
	errOut.Reset()
	if code := run(context.Background(), []string{"status", "-json", "-timeout=2s", statsURLs[1], "http://" + dead.Addr().String()}, &out, &errOut); code != 1 {
		t.Fatalf("-json with a dead node: exit %d, out %q, err %q", code, out.String(), errOut.String())
	}
	objs = decodeStatusJSON(t, out.Bytes())
	var deadSt struct {
		URL   string          `json:"url"`
		Error string          `json:"error"`
		Grid  json.RawMessage `json:"grid"`
	}
	if len(objs) != 2 || json.Unmarshal(objs[1], &deadSt) != nil || deadSt.Error == "" || deadSt.Grid != nil ||
		!strings.Contains(deadSt.URL, dead.Addr().String()) {
		t.Fatalf("-json with a dead node:\n%s", out.String())
	}
	if code := run(context.Background(), []string{"status", "ftp://x"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "bad node URL") {
		t.Fatalf("bad URL: exit %d, err %q", code, errOut.String())
	}
	// Without the token, or without trusting the CA, node 0 does not
	// answer; the grid port is no operations port.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-cacert", certs.CA, statsURLs[0]}, "HTTP 401"},
		{[]string{"-token-file", tokenFile, statsURLs[0]}, "certificate"},
		{[]string{hosts[0]}, "HTTP 404"},
	} {
		out.Reset()
		errOut.Reset()
		if code := run(context.Background(), append([]string{"status", "-timeout=5s"}, tc.args...), &out, &errOut); code != 1 || !strings.Contains(out.String(), tc.want) {
			t.Errorf("status %v: exit %d, out %q, err %q; want %q", tc.args, code, out.String(), errOut.String(), tc.want)
		}
	}
}

// decodeStatusJSON splits the output of status -json into its objects.
func decodeStatusJSON(t *testing.T, out []byte) []json.RawMessage {
	t.Helper()
	var objs []json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var o json.RawMessage
		if err := dec.Decode(&o); err != nil {
			t.Fatalf("status -json output is not a sequence of JSON objects: %v\n%s", err, out)
		}
		objs = append(objs, o)
	}
	return objs
}
