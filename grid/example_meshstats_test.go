package grid_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"time"
)

// Any node gathers every node's stats over the grid: each peer answers
// with its grid stats and the sections its application added. A node
// that is down is still listed, with why; one that is up may still lack
// its stats (a node of an older version has no stats handler).
func ExampleManager_MeshStats() {
	lnA, _ := net.Listen("tcp", "127.0.0.1:0")
	lnB, _ := net.Listen("tcp", "127.0.0.1:0")
	lnC, _ := net.Listen("tcp", "127.0.0.1:0")
	a, b, c := "http://"+lnA.Addr().String(), "http://"+lnB.Addr().String(), "http://"+lnC.Addr().String()
	hosts := []string{a, b, c}
	names := map[string]string{a: "a", b: "b", c: "c"}

	nodeA, stopA := startNode(lnA, a, hosts)
	defer stopA()
	nodeB, stopB := startNode(lnB, b, hosts)
	defer stopB()
	// Node b's application adds its own counters to its stats.
	type queue struct {
		Waiting int `json:"waiting"`
	}
	_ = nodeB.SetStatsSection("queue", func(context.Context) any { return queue{Waiting: 3} })
	lnC.Close() // node c never starts

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := nodeA.Connection(b).WaitForConnect(ctx); err != nil {
		panic(err)
	}
	if err := nodeB.Connection(a).WaitForConnect(ctx); err != nil {
		panic(err)
	}
	for _, n := range nodeA.MeshStats(ctx).Nodes {
		switch {
		case !n.Up:
			fmt.Printf("%s: down (%s)\n", names[n.Host], n.State)
			continue
		case n.Stats == nil: // a node of an older version, say
			fmt.Printf("%s: up, no stats (%s)\n", names[n.Host], n.StatsError)
			continue
		}
		var q queue
		_ = json.Unmarshal(n.Stats.Sections["queue"], &q)
		fmt.Printf("%s: up, %d of %d peers connected, %d waiting\n", names[n.Host], n.Stats.Grid.Connected, len(n.Stats.Grid.Peers), q.Waiting)
	}
	// Unordered output:
	// a: up, 1 of 2 peers connected, 0 waiting
	// b: up, 1 of 2 peers connected, 3 waiting
	// c: down (connecting)
}
