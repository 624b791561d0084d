package grid

import (
	"encoding/binary"
	"strconv"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

// rawPeer is an authenticated peer played by the test: it dials a node
// and speaks mux frames of its own making.
type rawPeer struct {
	t  *testing.T
	ws *websocket.Conn
}

// dialRaw opens a session to acc as the peer named from, and says hello.
func dialRaw(t *testing.T, acc *node, from string) *rawPeer {
	t.Helper()
	h := handshake{
		from: from, to: acc.name, millis: time.Now().UnixMilli(),
		nonce: newID(), instance: newID(), hosts: acc.m.currentHash(),
	}
	hdr, err := h.header(acc.m.opts.Authenticator)
	must(t, err)
	ws, _, err := websocket.Dial(testCtx(t), acc.name+DefaultRoutePath, &websocket.DialOptions{HTTPHeader: hdr})
	must(t, err)
	t.Cleanup(func() { ws.CloseNow() })
	p := make([]byte, 20)
	copy(p, "GMUX")
	p[4] = mux.Version
	binary.BigEndian.PutUint32(p[8:], 1<<20)
	binary.BigEndian.PutUint32(p[12:], 64)
	binary.BigEndian.PutUint32(p[16:], 64)
	r := &rawPeer{t: t, ws: ws}
	r.send(mux.Header{Op: mux.OpHello}, p)
	return r
}

func (r *rawPeer) send(h mux.Header, payload []byte) {
	r.t.Helper()
	must(r.t, r.ws.Write(testCtx(r.t), websocket.MessageBinary, mux.AppendFrame(nil, h, payload)))
}

// gauges returns the gauges of st that are not 0, by name.
func gauges(st ConnectionStats) map[string]int {
	out := map[string]int{}
	for name, v := range map[string]int{
		"InFlight": st.InFlight, "Running": st.Running, "Unanswered": st.Unanswered,
		"StreamsOut": st.StreamsOut, "StreamsIn": st.StreamsIn, "QueuedBytes": st.QueuedBytes,
		"OrphanedHandlers": st.OrphanedHandlers,
	} {
		if v != 0 {
			out[name] = v
		}
	}
	return out
}

// TestGaugesZeroAfterSessionEnds: a peer's sessions end in the middle of
// everything (its requests being served, 35 requests and a stream open
// half sent in chunks, a request and a stream of ours awaiting it). With
// no session up, every gauge reads 0, in Stats and in the metrics
// (gridmesh_peer_handlers_running among them), while the counters keep
// their totals from one session to the next.
func TestGaugesZeroAfterSessionEnds(t *testing.T) {
	lns, names := listen(t, 2)
	d, a := 0, 1 // the peer that dials (played by the test), the node
	if !ShouldDial(names[0], names[1]) {
		d, a = 1, 0
	}
	lns[d].Close()
	acc := startNode(t, lns[a], baseOptions(names[a], names))
	streamHandler(t, hsBlock, handlers.StreamHandler{Handle: newBlocker(4).handle}, acc)
	c := acc.m.Connection(names[d])
	ctx := testCtx(t)
	const halfSent = 35

	var prev ConnectionStats
	for session := 1; session <= 2; session++ {
		p := dialRaw(t, acc, names[d])
		waitFor(t, "the session", func() bool { return c.State() == StateConnected })
		id := uint64(0)
		next := func() uint64 { id++; return id }
		// Served at once, and served until the session ends.
		p.send(mux.Header{Op: mux.OpRequest, Handler: hWho, ID: next()}, []byte("hi"))
		p.send(mux.Header{Op: mux.OpRequest, Handler: hBlock, ID: next()}, nil)
		p.send(mux.Header{Op: mux.OpStreamOpen, Handler: hsBlock, ID: next()}, nil)
		// Half sent: the first chunks only.
		for range halfSent {
			p.send(mux.Header{Op: mux.OpRequest, Flags: mux.FlagMore, Handler: hWho, ID: next()}, make([]byte, mux.MaxFramePayload)) // every chunk but the last is full
		}
		p.send(mux.Header{Op: mux.OpStreamOpen, Flags: mux.FlagMore, Handler: hsBlock, ID: next()}, make([]byte, mux.MaxFramePayload))
		// Ours, which the peer never answers.
		go c.Request(ctx, hWho, nil)
		go c.OpenStream(ctx, hsBlock, nil)
		waitFor(t, "everything under way", func() bool {
			st := c.Stats()
			return st.Running == 1+halfSent && st.StreamsIn == 1 && st.InFlight == 1 && st.StreamsOut == 1 && st.Served >= prev.Served+1
		})
		during := c.Stats()
		t.Logf("session %d under way: %v", session, gauges(during))

		p.ws.CloseNow()
		waitFor(t, "the session to end", func() bool { return c.State() == StateConnecting })
		var st ConnectionStats
		deadline := time.Now().Add(5 * time.Second)
		for {
			st = c.Stats()
			if len(gauges(st)) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("session %d ended, no session up, and gauges still read %v", session, gauges(st))
			}
			time.Sleep(2 * time.Millisecond)
		}
		m := scrape(t, acc, names[d])
		for _, g := range []string{
			"gridmesh_peer_up", "gridmesh_peer_handlers_running", "gridmesh_peer_handlers_orphaned",
			"gridmesh_peer_requests_in_flight", "gridmesh_peer_requests_unanswered", "gridmesh_peer_streams_opened",
			"gridmesh_peer_streams_served", "gridmesh_peer_queued_bytes",
		} {
			if m[g] != "0" {
				t.Errorf("session %d over: %s = %q, want 0", session, g, m[g])
			}
		}
		// Counters: what this session did, on top of what the last ones did.
		if st.Served < during.Served || st.Served < prev.Served+2 || st.FramesIn < during.FramesIn ||
			st.BytesIn < during.BytesIn || st.RequestsOut < prev.RequestsOut+1 || st.Connects != uint64(session) {
			t.Errorf("session %d over: counters went back: served %d (during %d, before %d), frames in %d (during %d), requests out %d (before %d), connects %d",
				session, st.Served, during.Served, prev.Served, st.FramesIn, during.FramesIn, st.RequestsOut, prev.RequestsOut, st.Connects)
		}
		if m["gridmesh_peer_requests_served_total"] == "0" || m["gridmesh_peer_connects_total"] != strconv.Itoa(session) {
			t.Errorf("session %d over: served_total %q, connects_total %q", session, m["gridmesh_peer_requests_served_total"], m["gridmesh_peer_connects_total"])
		}
		prev = st
	}
}
