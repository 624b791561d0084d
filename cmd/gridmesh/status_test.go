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
	"github.com/gridmesh/gridmesh/gateway/worker"
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
		// Node 0 also plays a worker with contract processes, node 1 a
		// gateway.
		var path string
		var parts any
		if i == 0 {
			path, parts = worker.StatsPath, worker.NodeStats{
				Worker:    &worker.Status{Capacity: 8, Running: 3, Done: 42, Refused: 2, Draining: true},
				Processes: &worker.ProcessStats{Processes: 2, Running: 2, Starts: 3, Ended: 1, Cancelled: 4},
			}
		} else {
			path, parts = gateway.StatsPath, gateway.NodeStats{
				Gateway:  &gateway.Stats{Received: 7, Sent: 6, Connected: true, Journaled: 6, MarksPending: 9, MarksDropped: 11},
				Dispatch: &gateway.DispatchStats{Redispatched: 1, Workers: []gateway.WorkerStats{{Host: hosts[0], Up: true, Capacity: 8, Running: 3, Done: 5}}},
			}
		}
		mux.HandleFunc(path, func(w http.ResponseWriter, _ *http.Request) {
			json.NewEncoder(w).Encode(parts)
		})
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
	if n := strings.Count(out.String(), "worker: running 3 of 8, done 42, refused 2, draining"); n != 1 {
		t.Errorf("worker counters shown %d times, want once (node 0 only):\n%s", n, out.String())
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
	if code := run(context.Background(), []string{"status", "-json", statsURLs[0]}, &out, &errOut); code != 0 || !strings.Contains(out.String(), `"State": "connected"`) {
		t.Fatalf("status -json: exit %d:\n%s", code, out.String())
	}
	objs := decodeStatusJSON(t, out.Bytes())
	if len(objs) != 1 {
		t.Fatalf("status -json of one node printed %d objects:\n%s", len(objs), out.String())
	}
	var st struct {
		URL  string             `json:"url"`
		Grid *grid.ManagerStats `json:"grid"`
		gateway.NodeStats
		Worker    *worker.Status       `json:"worker"`
		Processes *worker.ProcessStats `json:"processes"`
	}
	if err := json.Unmarshal(objs[0], &st); err != nil {
		t.Fatal(err)
	}
	if st.URL != hosts[0]+grid.DefaultStatsPath || st.Grid == nil || st.Grid.Local != hosts[0] || st.Grid.Connected != 1 ||
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
	if code := run(context.Background(), []string{"status", "-json", "-timeout=2s", statsURLs[0], "http://" + dead.Addr().String()}, &out, &errOut); code != 1 {
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
	if code := run(context.Background(), []string{"status", "ftp://x"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "bad node URL") {
		t.Fatalf("bad URL: exit %d, err %q", code, errOut.String())
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
