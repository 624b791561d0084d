package grid

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

// answerStats makes a node answer *answer to the stats handler, in place
// of its own stats, when answer holds one: what a buggy or hostile peer,
// or one of another version, may send.
func answerStats(o *Options, answer *atomic.Pointer[[]byte]) {
	o.ServerInterceptors = append(o.ServerInterceptors, func(ctx context.Context, info mux.CallInfo, req []byte, next mux.ServerHandler) ([]byte, error) {
		if b := answer.Load(); b != nil && info.Handler == HandlerStats {
			return *b, nil
		}
		return next(ctx, info, req)
	})
}

// TestMeshStatsPeerAnswerBounds: the gatherer bounds what a peer answers,
// whatever the peer itself keeps to: an answer over 1 MiB is refused
// with an error in the peer's row (which stays up); in one under it,
// names and errors are clipped, a section over MaxStatsSectionBytes
// becomes an error, at most MaxStatsSections are kept, badly named ones
// dropped, and only the peers in the gatherer's membership are kept (made-up
// ones counted in PeersLeftOut). The mesh's JSON stays small.
func TestMeshStatsPeerAnswerBounds(t *testing.T) {
	var answer atomic.Pointer[[]byte]
	nodes, names := meshNodes(t, 2, func(i int, o *Options) {
		// The gatherer waits PingTimeout for an answer: long enough
		// for 13 MiB to cross loopback on a loaded machine (1 s was
		// not, beside stress-ng under -race).
		o.PingTimeout = testTimeout / 2
		if i == 1 {
			answerStats(o, &answer)
		}
	})
	a, b := nodes[0].m, names[1]
	mesh := func() (MeshNode, int) {
		t.Helper()
		ms := a.MeshStats(testCtx(t))
		j, err := json.Marshal(ms)
		must(t, err)
		return meshNode(t, ms, b), len(j)
	}

	// 12 MiB in one section and 1 MiB of a section error: refused.
	huge, err := json.Marshal(NodeStats{Host: b,
		Sections:      map[string]json.RawMessage{"x": json.RawMessage(`"` + strings.Repeat("A", 12<<20) + `"`)},
		SectionErrors: map[string]string{"y": strings.Repeat("E", 1<<20)}})
	must(t, err)
	answer.Store(&huge)
	n, size := mesh()
	if !n.Up || n.Stats != nil || n.Error != "" || !strings.Contains(n.StatsError, "over the bound of 1 MiB") {
		t.Errorf("a peer answering %d bytes: %+v", len(huge), n)
	}
	if size > 16<<10 {
		t.Errorf("the mesh's JSON is %d bytes with a peer answering %d", size, len(huge))
	}

	// Under 1 MiB, but every part beyond what a node of this version
	// answers.
	long := strings.Repeat("L", 50<<10)
	odd := NodeStats{Host: b, Instance: long,
		Grid: ManagerStats{Local: long, Peers: map[string]ConnectionStats{
			names[0]: {Host: "elsewhere", State: StateConnected, LastError: long, PeerInstance: long},
			b:        {State: StateConnected}, // itself
		}},
		Sections: map[string]json.RawMessage{
			"big":      json.RawMessage(`"` + strings.Repeat("B", MaxStatsSectionBytes) + `"`),
			"Bad Name": json.RawMessage(`1`),
		},
		SectionErrors: map[string]string{"err": long},
	}
	for i := range 12 {
		odd.Sections[fmt.Sprintf("s%02d", i)] = json.RawMessage(`1`)
	}
	// And 20,000 made-up peers, with nothing but their names.
	const madeUp = 20_000
	body, err := json.Marshal(odd)
	must(t, err)
	var generic map[string]any
	must(t, json.Unmarshal(body, &generic))
	peers := generic["grid"].(map[string]any)["peers"].(map[string]any)
	for i := range madeUp {
		peers[fmt.Sprintf("http://made-up-%d:1", i)] = struct{}{}
	}
	body, err = json.Marshal(generic)
	must(t, err)
	if len(body) > maxStatsAnswer {
		t.Fatalf("the odd answer is %d bytes, over 1 MiB", len(body))
	}
	answer.Store(&body)
	n, size = mesh()
	if !n.Up || n.Stats == nil || n.StatsError != "" {
		t.Fatalf("a peer answering odd stats: %+v", n)
	}
	st := n.Stats
	for what, s := range map[string]string{"instance": st.Instance, "local": st.Grid.Local} {
		if len(s) > maxStatsName+len("…") {
			t.Errorf("%s: %d bytes kept", what, len(s))
		}
	}
	p, ok := st.Grid.Peers[names[0]]
	if len(st.Grid.Peers) != 1 || !ok || n.PeersLeftOut != madeUp+1 {
		t.Errorf("%d peers kept (%d left out), want the gatherer alone (%d left out)", len(st.Grid.Peers), n.PeersLeftOut, madeUp+1)
	}
	if p.Host != names[0] || len(p.LastError) > maxStatsError+len("…") || len(p.PeerInstance) > maxStatsName+len("…") {
		t.Errorf("the gatherer as the peer lists it: host %q, %d bytes of error, %d of instance", p.Host, len(p.LastError), len(p.PeerInstance))
	}
	// By name, the first eight well-named: big (refused), err, s00..s05.
	if got := len(st.Sections) + len(st.SectionErrors); got != MaxStatsSections {
		t.Errorf("%d sections kept, want %d: %v, errors %v", got, MaxStatsSections, st.Sections, st.SectionErrors)
	}
	if _, ok := st.Sections["big"]; ok || !strings.Contains(st.SectionErrors["big"], "over MaxStatsSectionBytes") {
		t.Errorf("section big: error %q", st.SectionErrors["big"])
	}
	if e := st.SectionErrors["err"]; len(e) > maxStatsError+len("…") || !strings.HasPrefix(e, "LLL") {
		t.Errorf("section err's error: %d bytes", len(e))
	}
	if _, ok := st.Sections["Bad Name"]; ok || string(st.Sections["s05"]) != "1" || st.Sections["s06"] != nil {
		t.Errorf("sections kept: %v", st.Sections)
	}
	if size > 16<<10 {
		t.Errorf("the mesh's JSON is %d bytes with a peer answering %d", size, len(body))
	}

	// Not NodeStats, or another node's: refused too.
	for _, bad := range []string{`[1, 2]`, `{"host": "http://other:1"}`, `{"host": ` + fmt.Sprintf("%q", b) + `, "grid": {"peers": {"x": {"state": "new"}}}}`} {
		bb := []byte(bad)
		answer.Store(&bb)
		if n, _ := mesh(); !n.Up || n.Stats != nil || n.StatsError == "" {
			t.Errorf("a peer answering %s: %+v", bad, n)
		}
	}
}

// startOlderNode starts a node as one of a version from before the stats
// handler: its registry lacks HandlerStats. (Its Manager is built with no
// peers, its registry swapped, and then given its hosts, so that no
// session reads the registry before the swap.)
func startOlderNode(t *testing.T, ln net.Listener, opts Options) *node {
	t.Helper()
	hosts := opts.Hosts
	opts.Hosts = []string{opts.Local}
	n := startNode(t, ln, opts)
	n.m.reg = new(handlers.Registry)
	must(t, n.m.SetHosts(hosts))
	return n
}

// TestMeshStatsOlderPeer: during a rolling upgrade, a reachable peer of an
// older version answers that it has no stats handler: it is up, without
// stats, marked OlderVersion; a peer whose stats handler fails is up with
// the error; a stopped peer is still down.
func TestMeshStatsOlderPeer(t *testing.T) {
	lns, names := listen(t, 4)
	nodes := make([]*node, 4)
	failing := func(ctx context.Context, info mux.CallInfo, req []byte, next mux.ServerHandler) ([]byte, error) {
		if info.Handler == HandlerStats {
			return nil, errors.New("stats broke")
		}
		return next(ctx, info, req)
	}
	for i, ln := range lns {
		o := baseOptions(names[i], names)
		switch i {
		case 1:
			nodes[i] = startOlderNode(t, ln, o)
			continue
		case 2:
			o.ServerInterceptors = []mux.ServerInterceptor{failing}
		}
		nodes[i] = startNode(t, ln, o)
	}
	for _, nd := range nodes {
		must(t, nd.m.WaitForConnect(testCtx(t)))
	}
	nodes[3].stop()
	waitFor(t, "node 3 down", func() bool { return nodes[0].m.Connection(names[3]).State() != StateConnected })

	ms := nodes[0].m.MeshStats(testCtx(t))
	if n := meshNode(t, ms, names[1]); !n.Up || n.Error != "" || n.Stats != nil || !n.OlderVersion ||
		n.State != StateConnected || !strings.Contains(n.StatsError, "no stats handler (an older version)") {
		t.Errorf("the older peer: %+v", n)
	}
	if n := meshNode(t, ms, names[2]); !n.Up || n.Stats != nil || n.OlderVersion || !strings.Contains(n.StatsError, "stats broke") {
		t.Errorf("the peer whose stats fail: %+v", n)
	}
	if n := meshNode(t, ms, names[3]); n.Up || n.Error == "" || n.StatsError != "" {
		t.Errorf("the stopped peer: %+v", n)
	}
	if n := meshNode(t, ms, names[0]); !n.Up || n.Stats == nil {
		t.Errorf("the gatherer: %+v", n)
	}
}
