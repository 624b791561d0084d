package handlers_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 30 * time.Second

var (
	hsUpper = handlers.New(40, "typed-upper")
	hsCount = handlers.New(41, "typed-count")
	hsBlock = handlers.New(42, "typed-block")
	hsRaw   = handlers.New(43, "typed-raw")
)

// upperStream answers each Text with payload["prefix"] + its upper case.
var upperStream = handlers.NewTypedStream(hsUpper,
	func() *handlers.MSS { return new(handlers.MSS) },
	func() *handlers.Text { return new(handlers.Text) },
	func() *handlers.Text { return new(handlers.Text) })

// countStream takes no input and sends payload.Value messages.
var countStream = handlers.NewTypedStream(hsCount,
	func() *handlers.Text { return new(handlers.Text) },
	func() *handlers.NoPayload { return new(handlers.NoPayload) },
	func() *handlers.Text { return new(handlers.Text) })

// pipes is how the two sessions of a test are connected.
var pipes = []struct {
	name string
	pair func(tb testing.TB) (net.Conn, net.Conn)
}{
	{"pipe", func(testing.TB) (net.Conn, net.Conn) { return net.Pipe() }},
	{"tcp", tcpPair},
}

func tcpPair(tb testing.TB) (net.Conn, net.Conn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	b := <-accepted
	if b == nil {
		tb.Fatal("accept failed")
	}
	return a, b
}

// sessions connects a calling session to one serving reg and closes both
// at the end of the test, after checking that no stream state is left.
func sessions(tb testing.TB, pair func(testing.TB) (net.Conn, net.Conn), reg *handlers.Registry) *mux.Session {
	tb.Helper()
	a, b := pair(tb)
	client, err := mux.NewSession(a, nil, mux.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	server, err := mux.NewSession(b, reg, mux.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		client.Close()
		server.Close()
	})
	tb.Cleanup(func() { noStreams(tb, client, server) })
	return client
}

// noStreams waits until neither session holds stream state.
func noStreams(tb testing.TB, ss ...*mux.Session) {
	tb.Helper()
	deadline := time.Now().Add(testTimeout)
	for _, s := range ss {
		for {
			st := s.Stats()
			if st.StreamsOut == 0 && st.StreamsIn == 0 {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("stream state left: %+v", st)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	tb.Cleanup(cancel)
	return ctx
}

func registerUpper(tb testing.TB, reg *handlers.Registry) {
	tb.Helper()
	err := upperStream.Register(reg, 1, 1, func(ctx context.Context, p *handlers.MSS, in *handlers.In[*handlers.Text], out *handlers.Out[*handlers.Text]) error {
		for {
			req, err := in.Recv(ctx)
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if req.Value == "fail" {
				return errors.New("asked to fail")
			}
			if err := out.Send(ctx, &handlers.Text{Value: (*p)["prefix"] + strings.ToUpper(req.Value)}); err != nil {
				return err
			}
		}
	})
	if err != nil {
		tb.Fatal(err)
	}
}

func TestTypedStreamRoundTrip(t *testing.T) {
	for _, p := range pipes {
		t.Run(p.name, func(t *testing.T) {
			reg := new(handlers.Registry)
			registerUpper(t, reg)
			s := sessions(t, p.pair, reg)
			ctx := testCtx(t)
			c, err := upperStream.Open(ctx, s, &handlers.MSS{"prefix": "> "})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 11 {
				word := fmt.Sprintf("word %d", i)
				if err := c.Send(ctx, &handlers.Text{Value: word}); err != nil {
					t.Fatal(err)
				}
				got, err := c.Recv()
				if err != nil || got.Value != "> "+strings.ToUpper(word) {
					t.Fatalf("round %d: %+v %v", i, got, err)
				}
			}
			c.CloseSend()
			if got, err := c.Recv(); err != io.EOF {
				t.Fatalf("after CloseSend: %+v %v, want io.EOF", got, err)
			}
			if _, err := c.Recv(); err != io.EOF {
				t.Fatalf("Recv again: %v, want io.EOF again", err)
			}
		})
	}
}

func TestTypedStreamHandlerError(t *testing.T) {
	reg := new(handlers.Registry)
	registerUpper(t, reg)
	s := sessions(t, pipes[0].pair, reg)
	ctx := testCtx(t)
	c, err := upperStream.Open(ctx, s, &handlers.MSS{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Send(ctx, &handlers.Text{Value: "fail"}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Recv()
	var re *mux.RemoteError
	if !errors.As(err, &re) || re.Handler != hsUpper || re.Msg != "asked to fail" {
		t.Fatalf("got %v, want the handler's error as a RemoteError", err)
	}
	if err := c.Send(ctx, &handlers.Text{Value: "late"}); !errors.Is(err, mux.ErrStreamEnded) {
		t.Fatalf("send after the end: %v", err)
	}
}

func TestTypedStreamNoInput(t *testing.T) {
	reg := new(handlers.Registry)
	err := countStream.Register(reg, 0, 2, func(ctx context.Context, p *handlers.Text, in *handlers.In[*handlers.NoPayload], out *handlers.Out[*handlers.Text]) error {
		if _, err := in.Recv(ctx); err != io.EOF {
			return fmt.Errorf("in.Recv without input: %v", err)
		}
		for i := range 3 {
			if err := out.Send(ctx, &handlers.Text{Value: fmt.Sprintf("%s%d", p.Value, i)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s := sessions(t, pipes[1].pair, reg)
	c, err := countStream.Open(testCtx(t), s, &handlers.Text{Value: "n"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		m, err := c.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.Value)
	}
	if strings.Join(got, ",") != "n0,n1,n2" {
		t.Fatalf("got %v", got)
	}
	if err := c.Send(testCtx(t), &handlers.NoPayload{}); !errors.Is(err, mux.ErrStreamEnded) {
		t.Fatalf("send to a handler without input: %v", err)
	}
}

func TestTypedStreamCancel(t *testing.T) {
	blockStream := handlers.NewTypedStream(hsBlock,
		func() *handlers.NoPayload { return new(handlers.NoPayload) },
		func() *handlers.Text { return new(handlers.Text) },
		func() *handlers.Text { return new(handlers.Text) })
	started, ended := make(chan struct{}), make(chan error, 1)
	reg := new(handlers.Registry)
	err := blockStream.Register(reg, 1, 1, func(ctx context.Context, _ *handlers.NoPayload, in *handlers.In[*handlers.Text], _ *handlers.Out[*handlers.Text]) error {
		close(started)
		_, err := in.Recv(ctx) // nothing comes
		ended <- err
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s := sessions(t, pipes[0].pair, reg)
	c, err := blockStream.Open(testCtx(t), s, &handlers.NoPayload{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(testTimeout):
		t.Fatal("handler did not start")
	}
	c.Cancel()
	if _, err := c.Recv(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Recv after Cancel: %v", err)
	}
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("handler's in.Recv: %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("handler not cancelled")
	}
}

// TestTypedStreamDecodeErrors: a payload or message that does not decode
// is an error naming the handler, on either side.
func TestTypedStreamDecodeErrors(t *testing.T) {
	reg := new(handlers.Registry)
	registerUpper(t, reg)
	garbage := []byte{0xc1} // never used in msgpack
	handlerSawEnd := make(chan struct{})
	if err := reg.RegisterStream(hsRaw, handlers.StreamHandler{OutCapacity: 1, Handle: func(ctx context.Context, _ []byte, _ <-chan []byte, out chan<- []byte) error {
		defer close(handlerSawEnd)
		select {
		case out <- garbage:
		case <-ctx.Done():
			return ctx.Err()
		}
		<-ctx.Done() // the typed caller cancels on a bad message
		return ctx.Err()
	}}); err != nil {
		t.Fatal(err)
	}
	s := sessions(t, pipes[0].pair, reg)
	ctx := testCtx(t)

	// A payload the handler cannot decode.
	raw, err := s.OpenStream(ctx, hsUpper, garbage)
	if err != nil {
		t.Fatal(err)
	}
	var re *mux.RemoteError
	if _, err := raw.Recv(); !errors.As(err, &re) || !strings.Contains(re.Msg, "decode stream payload") || !strings.Contains(re.Msg, "typed-upper") {
		t.Fatalf("bad payload: %v", err)
	}

	// A message the handler cannot decode.
	raw, err = s.OpenStream(ctx, hsUpper, mustMarshal(t, &handlers.MSS{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Send(ctx, garbage); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Recv(); !errors.As(err, &re) || !strings.Contains(re.Msg, "decode stream message") {
		t.Fatalf("bad message to the handler: %v", err)
	}

	// A message the caller cannot decode: Recv fails and cancels.
	rawStream := handlers.NewTypedStream(hsRaw,
		func() *handlers.NoPayload { return new(handlers.NoPayload) },
		func() *handlers.NoPayload { return new(handlers.NoPayload) },
		func() *handlers.Text { return new(handlers.Text) })
	c, err := rawStream.Open(ctx, s, &handlers.NoPayload{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Recv(); err == nil || !strings.Contains(err.Error(), "decode stream message") || !strings.Contains(err.Error(), "typed-raw") {
		t.Fatalf("bad message to the caller: %v", err)
	}
	select {
	case <-handlerSawEnd:
	case <-time.After(testTimeout):
		t.Fatal("the stream was not cancelled after a bad message")
	}
	for {
		if _, err := c.Recv(); err != nil {
			break
		}
	}
}

func mustMarshal(tb testing.TB, m handlers.Message) []byte {
	tb.Helper()
	b, err := m.MarshalMsg(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
