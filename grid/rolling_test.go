package grid

import (
	"net"
	"slices"
	"testing"
	"time"
)

// TestRollingRestartChangedHosts restarts every node, one at a time, with
// a new host list (one node leaves, one joins): at each step every pair of
// running nodes that list each other is connected and serves, and the
// pairs that do not involve the restarting node never reconnect.
func TestRollingRestartChangedHosts(t *testing.T) {
	lns, names := listen(t, 5)
	oldList, newList := names[:4], append(slices.Clone(names[:3]), names[4]) // names[3] leaves, names[4] joins
	nodes := make(map[string]*node)
	lists := make(map[string][]string)
	start := func(name string, ln net.Listener, hosts []string) {
		nodes[name], lists[name] = startNode(t, ln, baseOptions(name, hosts)), hosts
	}
	for i, n := range oldList {
		start(n, lns[i], oldList)
	}
	start(names[4], lns[4], newList)
	lists2 := func(a, b string) bool { return slices.Contains(lists[a], b) && slices.Contains(lists[b], a) }
	// check waits for every pair that lists each other to connect and
	// serve; calls to or from restarted (which may still see its old
	// session for a moment) are retried, all others must not fail.
	check := func(step, restarted string) map[[2]string]uint64 {
		t.Helper()
		ctx := testCtx(t)
		connects := make(map[[2]string]uint64)
		for a, na := range nodes {
			for b := range nodes {
				if a == b || !lists2(a, b) {
					continue
				}
				c := na.m.Connection(b)
				if err := c.WaitForConnect(ctx); err != nil {
					t.Fatalf("%s: %s → %s: %v", step, a, b, err)
				}
				for err := na.call(ctx, b, step); err != nil; err = na.call(ctx, b, step) {
					if (a != restarted && b != restarted) || ctx.Err() != nil {
						t.Fatalf("%s: %s → %s: %v", step, a, b, err)
					}
					time.Sleep(time.Millisecond)
				}
				connects[[2]string{a, b}] = c.Stats().Connects
			}
		}
		return connects
	}
	before := check("start", "")
	for i, n := range newList[:3] { // the old nodes that stay, restarted with the new list
		nodes[n].stop()
		delete(nodes, n)
		ln, err := net.Listen("tcp", lns[i].Addr().String())
		must(t, err)
		start(n, ln, newList)
		if i == 0 { // the node that leaves goes once the first restarted node drops it
			nodes[names[3]].stop()
			delete(nodes, names[3])
		}
		after := check("after restarting "+n, n)
		for pair, c := range before {
			_, alive := nodes[pair[0]]
			_, alive2 := nodes[pair[1]]
			if pair[0] == n || pair[1] == n || !alive || !alive2 {
				continue
			}
			if after[pair] != c {
				t.Errorf("restarting %s: %s → %s reconnected (%d → %d connects)", n, pair[0], pair[1], c, after[pair])
			}
		}
		before = after
	}
	if len(nodes) != 4 {
		t.Fatalf("%d nodes at the end", len(nodes))
	}
	for a := range nodes {
		for b := range nodes {
			if a != b && !lists2(a, b) {
				t.Errorf("%s and %s do not list each other at the end", a, b)
			}
		}
	}
}
