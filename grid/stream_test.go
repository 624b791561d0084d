package grid

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/internal/streamtest"
	"github.com/gridmesh/gridmesh/mux"
)

var (
	hsEcho  = handlers.New(110, "grid-stream-echo")  // echoes every input message
	hsPush  = handlers.New(111, "grid-stream-push")  // pushes messages until cancelled or done
	hsBlock = handlers.New(112, "grid-stream-block") // waits for its context
	hsFail  = handlers.New(113, "grid-stream-fail")  // fails after one message
	hsWork  = handlers.New(114, "grid-stream-work")  // computes "for a long time"
)

// streamHandler registers h for id on every node.
func streamHandler(tb testing.TB, id handlers.HandlerID, h handlers.StreamHandler, nodes ...*node) {
	tb.Helper()
	for _, n := range nodes {
		must(tb, n.m.RegisterStreamHandler(id, h))
	}
}

// blocker is a stream handler that reports its start and waits for its
// context, reporting how it ended.
type blocker struct {
	started chan struct{}
	ended   chan error
}

func newBlocker(n int) *blocker {
	return &blocker{started: make(chan struct{}, n), ended: make(chan error, n)}
}

func (b *blocker) handle(ctx context.Context, _ []byte, _ <-chan []byte, _ chan<- []byte) error {
	b.started <- struct{}{}
	<-ctx.Done()
	b.ended <- ctx.Err()
	return ctx.Err()
}

// waitStarted waits for n handlers to start.
func (b *blocker) waitStarted(tb testing.TB, n int) {
	tb.Helper()
	for range n {
		select {
		case <-b.started:
		case <-time.After(testTimeout):
			tb.Fatal("stream handler did not start")
		}
	}
}

// waitEnded waits for n handlers to see their context end with want.
func (b *blocker) waitEnded(tb testing.TB, n int, want error) {
	tb.Helper()
	for range n {
		select {
		case err := <-b.ended:
			if !errors.Is(err, want) {
				tb.Fatalf("handler's context ended with %v, want %v", err, want)
			}
		case <-time.After(testTimeout):
			tb.Fatal("stream handler's context was not cancelled")
		}
	}
}

// endsWith checks that a stream's Responses ended with an error matching
// want (after any number of messages).
func endsWith(tb testing.TB, what string, st *mux.Stream, want error) {
	tb.Helper()
	rs := drain(tb, st)
	if len(rs) == 0 || !errors.Is(rs[len(rs)-1].Err, want) {
		tb.Fatalf("%s: stream ended with %+v, want %v", what, rs, want)
	}
}

// noStreamState waits until no node holds stream or request state on any
// connection: every stream ended on both sides.
func noStreamState(tb testing.TB, nodes ...*node) {
	tb.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		left := ""
		for _, n := range nodes {
			st := n.m.Stats()
			if st.StreamsOut != 0 || st.StreamsIn != 0 || st.Running != 0 || st.InFlight != 0 {
				left += fmt.Sprintf(" %s: out %d in %d running %d in-flight %d;", n.name, st.StreamsOut, st.StreamsIn, st.Running, st.InFlight)
			}
		}
		if left == "" {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("stream state left:%s", left)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestStreamNotConnected(t *testing.T) {
	_, names := listen(t, 2) // nothing serves the peer
	o := baseOptions(names[0], names)
	m, err := NewManager(context.Background(), o)
	must(t, err)
	defer m.Close()
	c := m.Connection(names[1])
	start := time.Now()
	if _, err := c.NewStream(testCtx(t), hsEcho, nil); !isDisconnected(err) {
		t.Fatalf("NewStream on a connection that is down: %v", err)
	}
	if _, err := c.OpenStream(testCtx(t), hsEcho, nil); !isDisconnected(err) {
		t.Fatalf("OpenStream on a connection that is down: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("NewStream took %v to fail; it should fail at once", d)
	}
	must(t, m.Close())
	if _, err := c.NewStream(testCtx(t), hsEcho, nil); !isClosed(err) || !isDisconnected(err) {
		t.Fatalf("NewStream after Close: %v", err)
	}
}

// TestStreamRoundTrip: capacities 1/1 reach the caller, 11 lockstep round
// trips, then closing Requests ends the handler's input and Responses.
// Both directions of the connection are used.
func TestStreamRoundTrip(t *testing.T) {
	d, a, _ := pair(t, nil)
	streamHandler(t, hsEcho, handlers.StreamHandler{Handle: streamtest.Echo, InCapacity: 1, OutCapacity: 1}, d, a)
	ctx := testCtx(t)
	for _, ends := range [][2]*node{{d, a}, {a, d}} {
		from, to := ends[0], ends[1]
		st, err := from.m.Connection(to.name).NewStream(ctx, hsEcho, []byte("hello"))
		must(t, err)
		if c := from.m.Connection(to.name).Stats(); c.StreamsOut != 1 {
			t.Errorf("%s: caller's stats show %d streams out, want 1", from.name, c.StreamsOut)
		}
		if c := to.m.Connection(from.name).Stats(); c.StreamsIn != 1 {
			t.Errorf("%s: server's stats show %d streams in, want 1", to.name, c.StreamsIn)
		}
		for i := range 11 {
			msg := fmt.Appendf(nil, "%s message %d", from.name, i)
			must(t, st.Send(ctx, msg))
			if r := recvResp(t, st); r.Err != nil || !bytes.Equal(r.Msg, msg) {
				t.Fatalf("round %d: %q %v", i, r.Msg, r.Err)
			}
		}
		st.CloseSend()
		if rest := drain(t, st); len(rest) != 0 {
			t.Fatalf("after closing Requests: %+v", rest)
		}
		noStreamState(t, d, a)
	}
}

// TestStreamHandlerEnd: a handler's error is the last Response, as a
// typed remote error; a nil return closes Responses cleanly; an unknown
// handler is refused at open.
func TestStreamHandlerEnd(t *testing.T) {
	d, a, _ := pair(t, nil)
	streamHandler(t, hsFail, handlers.StreamHandler{Handle: func(ctx context.Context, _ []byte, _ <-chan []byte, out chan<- []byte) error {
		select {
		case out <- []byte("partial"):
		case <-ctx.Done():
			return ctx.Err()
		}
		return errors.New("gave up")
	}}, a)
	streamHandler(t, hsPush, handlers.StreamHandler{OutCapacity: 2, Handle: func(ctx context.Context, p []byte, _ <-chan []byte, out chan<- []byte) error {
		for i := range 3 {
			select {
			case out <- fmt.Appendf(nil, "%s%d", p, i):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}}, a)
	ctx := testCtx(t)
	c := d.m.Connection(a.name)
	st, err := c.NewStream(ctx, hsFail, nil)
	must(t, err)
	rs := drain(t, st)
	var re *mux.RemoteError
	if len(rs) != 2 || string(rs[0].Msg) != "partial" || !errors.As(rs[1].Err, &re) || re.Msg != "gave up" || re.Handler != hsFail {
		t.Fatalf("failing handler: %+v", rs)
	}
	st, err = c.NewStream(ctx, hsPush, []byte("n"))
	must(t, err)
	var got []string
	must(t, st.Results(func(m []byte) error { got = append(got, string(m)); return nil }))
	if strings.Join(got, ",") != "n0,n1,n2" {
		t.Fatalf("push: %v", got)
	}
	if _, err := c.NewStream(ctx, hsEcho, nil); !errors.Is(err, mux.ErrUnknownHandler) {
		t.Fatalf("unknown handler: %v", err)
	}
	noStreamState(t, d, a)
}

// TestStreamsConcurrent runs 1,000 streams at once over one connection.
func TestStreamsConcurrent(t *testing.T) {
	d, a, _ := pair(t, nil)
	streamHandler(t, hsEcho, handlers.StreamHandler{Handle: streamtest.Echo, InCapacity: 2, OutCapacity: 2}, a)
	c := d.m.Connection(a.name)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	for i := range 1000 {
		wg.Go(func() {
			st, err := c.NewStream(ctx, hsEcho, nil)
			if err != nil {
				t.Error(err)
				return
			}
			for j := range 3 {
				msg := fmt.Appendf(nil, "%d/%d", i, j)
				if err := st.Send(ctx, msg); err != nil {
					t.Error(err)
					st.Cancel()
					drainQuiet(st)
					return
				}
				if r := <-st.Responses; r.Err != nil || !bytes.Equal(r.Msg, msg) {
					t.Errorf("%d/%d: %q %v", i, j, r.Msg, r.Err)
					st.Cancel()
					drainQuiet(st)
					return
				}
			}
			st.CloseSend()
			for r := range st.Responses {
				t.Errorf("extra %+v", r)
			}
		})
	}
	wg.Wait()
	noStreamState(t, d, a)
}

func drainQuiet(st *mux.Stream) {
	for range st.Responses {
	}
}

// TestTypedStreamOverGrid: a Connection is a handlers.StreamOpener, so
// typed stream handlers work over the grid.
func TestTypedStreamOverGrid(t *testing.T) {
	d, a, _ := pair(t, nil)
	hsTyped := handlers.New(115, "grid-stream-typed")
	ts := handlers.NewTypedStream(hsTyped,
		func() *handlers.Text { return new(handlers.Text) },
		func() *handlers.Text { return new(handlers.Text) },
		func() *handlers.Text { return new(handlers.Text) })
	for _, n := range []*node{d, a} {
		must(t, ts.Register(n.m.Registry(), 2, 2, func(ctx context.Context, p *handlers.Text, in *handlers.In[*handlers.Text], out *handlers.Out[*handlers.Text]) error {
			host, _ := PeerFromContext(ctx)
			for {
				req, err := in.Recv(ctx)
				if err != nil {
					if errors.Is(err, io.EOF) {
						return nil
					}
					return err
				}
				if err := out.Send(ctx, &handlers.Text{Value: p.Value + req.Value + " from " + host}); err != nil {
					return err
				}
			}
		}))
	}
	ctx := testCtx(t)
	for _, ends := range [][2]*node{{d, a}, {a, d}} {
		c, err := ts.Open(ctx, ends[0].m.Connection(ends[1].name), &handlers.Text{Value: "re: "})
		must(t, err)
		must(t, c.Send(ctx, &handlers.Text{Value: "hi"}))
		got, err := c.Recv()
		must(t, err)
		if want := "re: hi from " + ends[0].name; got.Value != want {
			t.Fatalf("got %q, want %q", got.Value, want)
		}
		c.CloseSend()
		if _, err := c.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("after CloseSend: %v", err)
		}
	}
	noStreamState(t, d, a)
}

// recvResp and drain read a stream's Responses within testTimeout.
func recvResp(tb testing.TB, st *mux.Stream) mux.Response {
	tb.Helper()
	return streamtest.Next(tb, st, testTimeout)
}

func drain(tb testing.TB, st *mux.Stream) []mux.Response {
	tb.Helper()
	return streamtest.Drain(tb, st, testTimeout)
}
