package mux_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/internal/streamtest"
	"github.com/gridmesh/gridmesh/mux"
)

var hsPanic = handlers.New(10, "spanic") // a Serve stream that panics

// TestServerInterceptorPanic: a server interceptor (single or stream)
// that panics is recovered at its own level, so the interceptors outside
// it return normally and see an outcome matching ErrHandlerPanic, kind
// "panic", as for a panic in the handler; the caller gets a panic error
// and the session goes on.
func TestServerInterceptorPanic(t *testing.T) {
	var sj journal
	bomb := func(h handlers.HandlerID) bool { return h == hWho || h == hsWho || h == hsHWho }
	panicky := func(ctx context.Context, info mux.CallInfo, req []byte, next mux.ServerHandler) ([]byte, error) {
		if bomb(info.Handler) {
			panic("interceptor bug")
		}
		return next(ctx, info, req)
	}
	panickyStream := func(ctx context.Context, info mux.CallInfo, payload []byte, next mux.StreamRunner) error {
		if bomb(info.Handler) {
			panic("interceptor bug")
		}
		return next(ctx, info, payload)
	}
	outerStream := func(ctx context.Context, info mux.CallInfo, payload []byte, next mux.StreamRunner) error {
		sj.add("s1>")
		err := next(ctx, info, payload)
		sj.add("<s1 %s %v", mux.ErrorKind(err, true), errors.Is(err, mux.ErrHandlerPanic))
		return err
	}
	reg := interceptRegistry(t)
	mustStream(t, reg, hsPanic, handlers.StreamHandler{
		Serve: func(context.Context, []byte, handlers.ServerStream) error { panic("handler bug") }})
	scfg := mux.Config{
		ServerInterceptors:       []mux.ServerInterceptor{serverIC(&sj, "s1"), panicky},
		ServerStreamInterceptors: []mux.ServerStreamInterceptor{outerStream, panickyStream},
	}
	p := newPair(t, transports[1], reg, mux.Config{}, scfg)
	ctx := testCtx(t)

	_, err := p.client.Request(ctx, hWho, nil)
	if !errors.Is(err, mux.ErrHandlerPanic) || !strings.Contains(err.Error(), "interceptor for who(6) panicked: interceptor bug") {
		t.Fatalf("request through a panicking interceptor: %v", err)
	}
	if lines, _ := sj.take(); !slices.Equal(lines, []string{"s1>", "<s1 panic"}) {
		t.Fatalf("the outer interceptor saw %q, want its return with a panic", lines)
	}
	for _, h := range []handlers.HandlerID{hsWho, hsHWho, hsPanic} {
		st, err := p.client.NewStream(ctx, h, nil)
		if err != nil {
			t.Fatal(err)
		}
		rs := streamtest.Drain(t, st, testTimeout)
		if n := len(rs); n == 0 || !errors.Is(rs[n-1].Err, mux.ErrHandlerPanic) {
			t.Fatalf("%v: responses %+v, want a panic error last", h, rs)
		}
		// The outer interceptor returned before the stream's end was
		// sent, which Drain saw.
		if lines, _ := sj.take(); !slices.Equal(lines, []string{"s1>", "<s1 panic true"}) {
			t.Fatalf("%v: the outer stream interceptor saw %q, want its return with a panic", h, lines)
		}
	}
	// Nothing is left behind: the session serves on, no stream is open.
	if resp, err := p.client.Request(ctx, hEcho, []byte("x")); err != nil || string(resp) != "x" {
		t.Fatalf("echo after the panics: %q %v", resp, err)
	}
	sj.take()
	if st := p.server.Stats(); st.StreamsIn != 0 {
		t.Fatalf("server holds %d streams after they ended", st.StreamsIn)
	}
}

// TestServerStreamInterceptorForeignContext: an interceptor that calls
// next with a context not derived from the one it was given (so the
// session cannot find the stream) ends the stream with an error saying
// so, rather than hanging or running the handler with a context that
// ignores the caller.
func TestServerStreamInterceptorForeignContext(t *testing.T) {
	foreign := func(_ context.Context, info mux.CallInfo, payload []byte, next mux.StreamRunner) error {
		return next(context.Background(), info, payload)
	}
	p := newPair(t, transports[1], interceptRegistry(t), mux.Config{},
		mux.Config{ServerStreamInterceptors: []mux.ServerStreamInterceptor{foreign}})
	st, err := p.client.NewStream(testCtx(t), hsWho, nil)
	if err != nil {
		t.Fatal(err)
	}
	rs := streamtest.Drain(t, st, testTimeout)
	if n := len(rs); n != 1 || rs[0].Err == nil || !strings.Contains(rs[0].Err.Error(), "not derived from the stream's") {
		t.Fatalf("responses %+v, want one error about the context", rs)
	}
}
