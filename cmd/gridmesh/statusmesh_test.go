package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gridmesh/gridmesh/grid"
)

// TestStatusMesh: `gridmesh status -mesh` shows the whole mesh from the
// gateway's operations port alone, a gateway and two workers running as
// processes: every node, the matrix of their connections, the pipeline;
// a worker killed with SIGKILL is listed down and the command exits 1.
func TestStatusMesh(t *testing.T) {
	c := startMeshCluster(t)
	tokenFile := filepath.Join(c.dir, "ops-token")
	url := "http://" + c.gatewayAddr()
	status := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), append([]string{"status", "-mesh", "-token-file", tokenFile}, args...), &out, &errOut)
		return code, out.String(), errOut.String()
	}

	code, out, errOut := status(url)
	t.Logf("status -mesh:\n%s", out)
	if code != 0 {
		t.Fatalf("status -mesh: exit %d\n%s%s", code, out, errOut)
	}
	want := []string{
		"mesh seen from " + c.names[0] + ": 3 nodes, 3 up",
		c.names[0] + " (this node)", "gateway", "worker",
		"connections (row: the node; column: its peer)", "bytes in/out, reconnects, errors",
		"gateway: prime connected true", "journal: ", "dispatch: ",
		"  worker " + c.names[1] + ": up true", "  worker " + c.names[2] + ": up true",
		"worker: running", "contract processes: 1 of 1 up",
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("status -mesh lacks %q:\n%s", w, out)
		}
	}
	// The matrix: three rows of a "-" and two connected peers.
	if n := strings.Count(out, "connected"); n < 6 {
		t.Errorf("status -mesh shows %d connected cells, want 6:\n%s", n, out)
	}

	c.kill(t, 2)
	c.waitMesh(t, "worker 2 down", func(ms grid.MeshStats) bool {
		for _, n := range ms.Nodes {
			if n.Host == c.names[2] {
				return !n.Up
			}
		}
		return false
	})
	code, out, errOut = status(url)
	t.Logf("status -mesh, a worker killed:\n%s", out)
	if code != 1 || !strings.Contains(errOut, "1 of 3 nodes down") || !strings.Contains(out, "3 nodes, 2 up") ||
		!strings.Contains(out, "connecting") || !strings.Contains(out, "?") {
		t.Errorf("status -mesh with a worker down: exit %d\n%s%s", code, out, errOut)
	}
	// -json: the mesh as served, the killed worker with its error.
	code, out, _ = status("-json", url)
	var ms grid.MeshStats
	if err := json.Unmarshal([]byte(out), &ms); code != 1 || err != nil || ms.From != c.names[0] || len(ms.Nodes) != 3 {
		t.Fatalf("status -mesh -json: exit %d, %v\n%s", code, err, out)
	}
	for _, n := range ms.Nodes {
		if down := n.Host == c.names[2]; n.Up == down || (down && n.Error == "") {
			t.Errorf("status -mesh -json: %+v", n)
		}
	}
	// One address only; an address that is no operations port.
	if code, _, errOut := status(url, url); code != 2 || !strings.Contains(errOut, "-mesh takes one node URL") {
		t.Errorf("two URLs: exit %d, %q", code, errOut)
	}
	if code, out, errOut := status(c.names[0]); code != 1 || !strings.Contains(errOut+out, "HTTP 404") {
		t.Errorf("the grid port: exit %d, %q %q", code, out, errOut)
	}
}
