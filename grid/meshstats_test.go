package grid

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

// meshNodes starts n connected nodes with baseOptions, opts applied to
// each, and waits until every pair is up.
func meshNodes(t *testing.T, n int, opts func(i int, o *Options)) ([]*node, []string) {
	t.Helper()
	lns, names := listen(t, n)
	nodes := make([]*node, n)
	for i, ln := range lns {
		o := baseOptions(names[i], names)
		if opts != nil {
			opts(i, &o)
		}
		nodes[i] = startNode(t, ln, o)
	}
	for _, nd := range nodes {
		must(t, nd.m.WaitForConnect(testCtx(t)))
	}
	return nodes, names
}

// meshNode returns the node named host in ms.
func meshNode(t *testing.T, ms MeshStats, host string) MeshNode {
	t.Helper()
	for _, n := range ms.Nodes {
		if n.Host == host {
			return n
		}
	}
	t.Fatalf("%s missing from the mesh: %+v", host, ms)
	return MeshNode{}
}

// TestMeshStats: one node gathers every node's stats, its peers' over
// their stats handler, sections included; a section that does not answer
// in time is reported as an error without holding the answer up (the
// peer answers within the gatherer's PingTimeout, which the section would
// exceed); a peer
// that stops is still listed, as down, with why.
func TestMeshStats(t *testing.T) {
	release := make(chan struct{})
	// Node 0 gathers within its PingTimeout, 5 s: node 2's answer, due
	// after half of node 2's (2 s, set here: the slow section's error
	// names it), has time to spare on a loaded machine.
	nodes, names := meshNodes(t, 3, func(i int, o *Options) {
		switch i {
		case 0:
			o.PingTimeout = 5 * time.Second
		case 2:
			o.PingTimeout = 2 * time.Second
		}
	})
	defer close(release)
	type load struct {
		Running int `json:"running"`
	}
	must(t, nodes[2].m.SetStatsSection("load", func(context.Context) any { return load{Running: 7} }))
	// "slow" ignores its context until the test ends: the answer must
	// come without it, and only one call may be running at a time.
	var slowCalls atomic.Int32
	must(t, nodes[2].m.SetStatsSection("slow", func(context.Context) any {
		slowCalls.Add(1)
		<-release
		return "late"
	}))

	ms := nodes[0].m.MeshStats(testCtx(t))
	if ms.From != names[0] || len(ms.Nodes) != 3 {
		t.Fatalf("mesh from %s: %+v", ms.From, ms)
	}
	for i, h := range names {
		n := meshNode(t, ms, h)
		if !n.Up || n.Error != "" || n.Stats == nil || n.Stats.Host != h || n.Self != (i == 0) || n.State != StateConnected {
			t.Fatalf("node %d: %+v", i, n)
		}
		if got := n.Stats.Grid.Connected; got != 2 {
			t.Errorf("node %d reports %d peers connected, want 2", i, got)
		}
		for _, p := range names {
			if ps, ok := n.Stats.Grid.Peers[p]; ok == (p == h) || (ok && ps.State != StateConnected) {
				t.Errorf("node %d's peer %s: %+v (listed %v)", i, p, ps, ok)
			}
		}
	}
	c := meshNode(t, ms, names[2]).Stats
	var l load
	if err := json.Unmarshal(c.Sections["load"], &l); err != nil || l.Running != 7 {
		t.Errorf("section load: %s, %v", c.Sections["load"], err)
	}
	if _, ok := c.Sections["slow"]; ok || !strings.Contains(c.SectionErrors["slow"], "no answer within 1s") {
		t.Errorf("slow section: %q, errors %v", c.Sections["slow"], c.SectionErrors)
	}
	// Asked again while the first call still runs: no second call.
	nodes[0].m.MeshStats(testCtx(t))
	if n := slowCalls.Load(); n != 1 {
		t.Errorf("the slow section ran %d times at once, want 1", n)
	}

	// Node 1 stops: it is still listed, down, with why.
	nodes[1].stop()
	for _, i := range []int{0, 2} {
		c := nodes[i].m.Connection(names[1])
		waitFor(t, fmt.Sprintf("node %d to see node 1 down", i), func() bool { return c.State() != StateConnected })
	}
	ms = nodes[0].m.MeshStats(testCtx(t))
	down := meshNode(t, ms, names[1])
	if down.Up || down.Stats != nil || down.State != StateConnecting || !strings.HasPrefix(down.Error, "connecting") {
		t.Errorf("stopped node: %+v", down)
	}
	// Node 2 still sees everyone, node 1 as down.
	n2 := meshNode(t, ms, names[2])
	if !n2.Up || n2.Stats.Grid.Peers[names[1]].State == StateConnected {
		t.Errorf("node 2 after node 1 stopped: %+v", n2)
	}
}

// TestMeshStatsSilentPeer: a peer that cannot answer (its only handler
// slot is taken) is reported down after PingTimeout, while its
// connection is still up.
func TestMeshStatsSilentPeer(t *testing.T) {
	// The gatherer's PingTimeout, set here: the error names it, and the
	// gathering must take at least as long.
	const timeout = 2 * time.Second
	nodes, names := meshNodes(t, 2, func(i int, o *Options) {
		switch i {
		case 0:
			o.PingTimeout = timeout
		case 1:
			o.Mux = mux.Config{MaxConcurrent: 1}
		}
	})
	ctx, cancel := context.WithCancel(testCtx(t))
	blocked := make(chan error, 1)
	go func() {
		_, err := nodes[0].m.Connection(names[1]).Request(ctx, hBlock, nil)
		blocked <- err
	}()
	defer func() { cancel(); <-blocked }()
	waitFor(t, "the peer's handler slot to be taken", func() bool {
		return nodes[1].m.Connection(names[0]).Stats().Running == 1
	})
	start := time.Now()
	ms := nodes[0].m.MeshStats(testCtx(t))
	took := time.Since(start)
	silent := meshNode(t, ms, names[1])
	if silent.Up || silent.State != StateConnected || silent.Error != "no answer within "+timeout.String() {
		t.Errorf("silent peer: %+v", silent)
	}
	if took < timeout {
		t.Errorf("gathering gave up after %v, before PingTimeout (%v)", took, timeout)
	}
}

// TestStatsBounds: what a section may make the stats handler answer is
// bounded: a section too large, one that panics or does not encode is
// an error in its place; names and the number of sections are checked;
// over 1 MiB in all, the sections are left out.
func TestStatsBounds(t *testing.T) {
	nodes, _ := meshNodes(t, 1, nil)
	m := nodes[0].m
	for _, name := range []string{"", "Upper", "a b", strings.Repeat("x", 33), "é"} {
		if err := m.SetStatsSection(name, func(context.Context) any { return 1 }); err == nil {
			t.Errorf("section name %q accepted", name)
		}
	}
	must(t, m.SetStatsSection("big", func(context.Context) any { return strings.Repeat("x", MaxStatsSectionBytes) }))
	must(t, m.SetStatsSection("panics", func(context.Context) any { panic("boom") }))
	must(t, m.SetStatsSection("chan", func(context.Context) any { return make(chan int) }))
	must(t, m.SetStatsSection("ok", func(context.Context) any { return 1 }))
	must(t, m.SetStatsSection("gone", func(context.Context) any { return 1 }))
	must(t, m.SetStatsSection("gone", nil))
	st := m.NodeStats(testCtx(t))
	if len(st.Sections) != 1 || string(st.Sections["ok"]) != "1" {
		t.Errorf("sections: %v", st.Sections)
	}
	for name, want := range map[string]string{"big": "over MaxStatsSectionBytes", "panics": "panic: boom", "chan": "unsupported type"} {
		if !strings.Contains(st.SectionErrors[name], want) {
			t.Errorf("section %s: error %q, want %q", name, st.SectionErrors[name], want)
		}
	}
	if _, ok := st.SectionErrors["gone"]; ok {
		t.Error("a removed section is still asked")
	}
	for i := len(st.Sections) + len(st.SectionErrors); i < MaxStatsSections; i++ {
		must(t, m.SetStatsSection(fmt.Sprintf("s%d", i), func(context.Context) any { return 1 }))
	}
	if err := m.SetStatsSection("one-too-many", func(context.Context) any { return 1 }); err == nil {
		t.Error("a section over MaxStatsSections accepted")
	}
	must(t, m.SetStatsSection("ok", func(context.Context) any { return 2 })) // replacing is no new section
}

// TestStatsAnswerBound: a node with so many peers that its grid stats and
// sections pass 1 MiB answers without its sections, within 1 MiB.
func TestStatsAnswerBound(t *testing.T) {
	if testing.Short() {
		t.Skip("a node with 2,500 peers")
	}
	_, names := listen(t, 1)
	hosts := []string{names[0]}
	// Peers this node awaits rather than dials: no goroutine each.
	for p := 1; len(hosts) < 2500; p++ {
		if h := fmt.Sprintf("http://127.0.0.1:%d", p); h != names[0] && !ShouldDial(names[0], h) {
			hosts = append(hosts, h)
		}
	}
	m, err := NewManager(context.Background(), baseOptions(names[0], hosts))
	must(t, err)
	defer m.Close()
	big := strings.Repeat("x", MaxStatsSectionBytes-100)
	for i := range MaxStatsSections {
		must(t, m.SetStatsSection(fmt.Sprintf("s%d", i), func(context.Context) any { return big }))
	}
	b, err := m.serveStats(testCtx(t), nil)
	must(t, err)
	var st NodeStats
	must(t, json.Unmarshal(b, &st))
	if len(b) > maxStatsAnswer || len(st.Sections) != 0 || len(st.Grid.Peers) != 2499 ||
		!strings.Contains(st.SectionErrors["s0"], "left out") {
		t.Fatalf("answer of %d bytes, %d sections, %d peers, errors %v", len(b), len(st.Sections), len(st.Grid.Peers), st.SectionErrors)
	}
}

// TestStatsHandlerReserved: a registry that holds the stats handler's ID
// is refused, naming the field; the Manager registers its own.
func TestStatsHandlerReserved(t *testing.T) {
	_, names := listen(t, 1)
	reg := new(handlers.Registry)
	must(t, reg.RegisterSingle(HandlerStats, func(context.Context, []byte) ([]byte, error) { return nil, nil }))
	o := baseOptions(names[0], names)
	o.Registry = reg
	if _, err := NewManager(context.Background(), o); !isInvalid(err) || !strings.Contains(err.Error(), "Registry") {
		t.Fatalf("NewManager with the stats ID taken: %v", err)
	}
	o.Registry = new(handlers.Registry)
	m, err := NewManager(context.Background(), o)
	must(t, err)
	if o.Registry.Lookup(HandlerStats) == nil {
		t.Error("the stats handler is not registered")
	}
	must(t, m.Close())
	// After Close, sections are not run.
	must(t, m.SetStatsSection("x", func(context.Context) any { return 1 }))
	if st := m.NodeStats(context.Background()); st.SectionErrors["x"] != ErrClosed.Error() {
		t.Errorf("section after Close: %v", st.SectionErrors)
	}
}

// TestStatsHandlerIDNamedTwice: a program that names the stats handler's
// ID otherwise panics at start-up (handlers.New's rule, documented), with
// a message that says the ID is the grid's.
func TestStatsHandlerIDNamedTwice(t *testing.T) {
	defer func() {
		msg := fmt.Sprint(recover())
		if !strings.Contains(msg, `"grid-stats" and "mine"`) || !strings.Contains(msg, "package grid reserves it") {
			t.Errorf("naming 4095 otherwise: panic %q", msg)
		}
	}()
	handlers.New(uint16(HandlerStats), "mine")
}

// TestNodeStatsConcurrent: many gatherers at once, with sections being
// replaced meanwhile, under the race detector.
func TestNodeStatsConcurrent(t *testing.T) {
	nodes, names := meshNodes(t, 2, nil)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 20 {
				if err := nodes[1].m.SetStatsSection(fmt.Sprintf("s%d", i%4), func(context.Context) any { return j }); err != nil {
					t.Error(err)
					return
				}
				ms := nodes[0].m.MeshStats(testCtx(t))
				if n := meshNode(t, ms, names[1]); !n.Up {
					t.Errorf("peer down: %+v", n)
					return
				}
			}
		})
	}
	wg.Wait()
}
