package mux_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/internal/streamtest"
	"github.com/gridmesh/gridmesh/mux"
)

// ctxKey carries a value a server interceptor puts in the handler's
// context.
type ctxKey struct{}

// journal records what interceptors saw, in order.
type journal struct {
	mu    sync.Mutex
	lines []string
	infos []mux.CallInfo
}

func (j *journal) add(format string, args ...any) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.lines = append(j.lines, fmt.Sprintf(format, args...))
}

func (j *journal) info(i mux.CallInfo) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.infos = append(j.infos, i)
}

func (j *journal) take() ([]string, []mux.CallInfo) {
	j.mu.Lock()
	defer j.mu.Unlock()
	l, i := j.lines, j.infos
	j.lines, j.infos = nil, nil
	return l, i
}

func clientIC(j *journal, name string) mux.ClientInterceptor {
	return func(ctx context.Context, info mux.CallInfo, req []byte, next mux.Invoker) ([]byte, error) {
		j.add("%s>", name)
		j.info(info)
		resp, err := next(ctx, info, req)
		j.add("<%s %s", name, mux.ErrorKind(err, false))
		return resp, err
	}
}

func serverIC(j *journal, name string) mux.ServerInterceptor {
	return func(ctx context.Context, info mux.CallInfo, req []byte, next mux.ServerHandler) ([]byte, error) {
		j.add("%s>", name)
		j.info(info)
		resp, err := next(context.WithValue(ctx, ctxKey{}, name), info, req)
		j.add("<%s %s", name, mux.ErrorKind(err, true))
		return resp, err
	}
}

var (
	hWho    = handlers.New(6, "who")    // answers the ctxKey value
	hsWho   = handlers.New(7, "swho")   // a Serve stream that sends the ctxKey value
	hsHWho  = handlers.New(8, "hwho")   // a Handle stream that sends the ctxKey value
	hsFails = handlers.New(9, "sfails") // a Serve stream that fails
)

func interceptRegistry(tb testing.TB) *handlers.Registry {
	reg := echoRegistry(tb)
	who := func(ctx context.Context) []byte { s, _ := ctx.Value(ctxKey{}).(string); return []byte(s) }
	mustRegister(tb, reg, hWho, func(ctx context.Context, _ []byte) ([]byte, error) { return who(ctx), nil })
	mustRegister(tb, reg, hFail, func(context.Context, []byte) ([]byte, error) { return nil, errors.New("no") })
	mustRegister(tb, reg, hPanic, func(context.Context, []byte) ([]byte, error) { panic("boom") })
	mustStream(tb, reg, hsWho, handlers.StreamHandler{OutCapacity: 1,
		Serve: func(ctx context.Context, _ []byte, st handlers.ServerStream) error { return st.Send(ctx, who(ctx)) }})
	mustStream(tb, reg, hsHWho, handlers.StreamHandler{OutCapacity: 1,
		Handle: func(ctx context.Context, _ []byte, _ <-chan []byte, out chan<- []byte) error {
			select {
			case out <- who(ctx):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}})
	mustStream(tb, reg, hsFails, handlers.StreamHandler{
		Serve: func(context.Context, []byte, handlers.ServerStream) error { return errors.New("stream says no") }})
	mustStream(tb, reg, hsEcho, handlers.StreamHandler{Handle: streamtest.Echo, InCapacity: 2, OutCapacity: 2})
	return reg
}

// TestInterceptorsSingle: client and server interceptors run in order,
// the first outermost, see the handler, the peer and the outcome, and the
// handler runs with the context the innermost server interceptor passed.
func TestInterceptorsSingle(t *testing.T) {
	var cj, sj journal
	ccfg := mux.Config{Peer: "server-node", ClientInterceptors: []mux.ClientInterceptor{clientIC(&cj, "c1"), clientIC(&cj, "c2")}}
	scfg := mux.Config{Peer: "client-node", ServerInterceptors: []mux.ServerInterceptor{serverIC(&sj, "s1"), serverIC(&sj, "s2")}}
	p := newPair(t, transports[1], interceptRegistry(t), ccfg, scfg)
	ctx := testCtx(t)

	resp, err := p.client.Request(ctx, hWho, nil)
	if err != nil || string(resp) != "s2" {
		t.Fatalf("who: %q %v, want the innermost interceptor's value s2", resp, err)
	}
	lines, infos := cj.take()
	if want := []string{"c1>", "c2>", "<c2 ", "<c1 "}; !slices.Equal(lines, want) {
		t.Fatalf("client interceptors ran %q, want %q", lines, want)
	}
	if want := (mux.CallInfo{Handler: hWho, Peer: "server-node"}); infos[0] != want || infos[1] != want {
		t.Fatalf("client CallInfo %+v, want %+v", infos, want)
	}
	lines, infos = sj.take()
	if want := []string{"s1>", "s2>", "<s2 ", "<s1 "}; !slices.Equal(lines, want) {
		t.Fatalf("server interceptors ran %q, want %q", lines, want)
	}
	if want := (mux.CallInfo{Handler: hWho, Peer: "client-node"}); infos[0] != want {
		t.Fatalf("server CallInfo %+v, want %+v", infos[0], want)
	}
	if infos[0].Handler.String() != "who(6)" {
		t.Fatalf("handler name %q", infos[0].Handler.String())
	}

	for _, tc := range []struct {
		h                  handlers.HandlerID
		clientKind, server string
		is                 error
	}{
		{hFail, "handler", "handler", nil},
		{hPanic, "panic", "panic", mux.ErrHandlerPanic},
		{hMissing, "unknown", "", mux.ErrUnknownHandler},
	} {
		_, err := p.client.Request(ctx, tc.h, nil)
		var re *mux.RemoteError
		if !errors.As(err, &re) || tc.is != nil && !errors.Is(err, tc.is) {
			t.Fatalf("%v: %v", tc.h, err)
		}
		lines, _ := cj.take()
		if lines[3] != "<c1 "+tc.clientKind {
			t.Fatalf("%v: client interceptor saw %q, want kind %s", tc.h, lines, tc.clientKind)
		}
		lines, _ = sj.take()
		if tc.server == "" {
			if len(lines) != 0 {
				t.Fatalf("%v: server interceptors ran for an unknown handler: %q", tc.h, lines)
			}
			continue
		}
		if lines[3] != "<s1 "+tc.server {
			t.Fatalf("%v: server interceptor saw %q, want kind %s", tc.h, lines, tc.server)
		}
	}
}

// TestInterceptorRefuses: a server interceptor that returns without
// calling next refuses the call (the caller gets its error as a handler
// error); a client interceptor's own error never leaves the node.
func TestInterceptorRefuses(t *testing.T) {
	ran := make(chan struct{}, 1)
	reg := new(handlers.Registry)
	mustRegister(t, reg, hEcho, func(_ context.Context, p []byte) ([]byte, error) { ran <- struct{}{}; return p, nil })
	deny := func(context.Context, mux.CallInfo, []byte, mux.ServerHandler) ([]byte, error) {
		return nil, errors.New("not allowed")
	}
	local := errors.New("local refusal")
	ccfg := mux.Config{ClientInterceptors: []mux.ClientInterceptor{func(ctx context.Context, info mux.CallInfo, req []byte, next mux.Invoker) ([]byte, error) {
		if string(req) == "local" {
			return nil, local
		}
		return next(ctx, info, req)
	}}}
	p := newPair(t, transports[0], reg, ccfg, mux.Config{ServerInterceptors: []mux.ServerInterceptor{deny}})
	_, err := p.client.Request(testCtx(t), hEcho, []byte("x"))
	var re *mux.RemoteError
	if !errors.As(err, &re) || re.Msg != "not allowed" || mux.ErrorKind(err, false) != "handler" {
		t.Fatalf("refused call: %v", err)
	}
	if _, err := p.client.Request(testCtx(t), hEcho, []byte("local")); err != local || mux.ErrorKind(err, false) != "other" {
		t.Fatalf("locally refused call: %v", err)
	}
	select {
	case <-ran:
		t.Fatal("the handler ran")
	default:
	}
}

// TestInterceptorsStream: stream interceptors see the open (client) and
// the handler's run (server), in both handler forms; the handler's
// context is the one the server interceptor passed.
func TestInterceptorsStream(t *testing.T) {
	var cj, sj journal
	cic := func(name string) mux.ClientStreamInterceptor {
		return func(ctx context.Context, info mux.CallInfo, payload []byte, next mux.StreamOpener) (*mux.Stream, error) {
			cj.add("%s>", name)
			cj.info(info)
			st, err := next(ctx, info, payload)
			cj.add("<%s %s", name, mux.ErrorKind(err, false))
			return st, err
		}
	}
	sic := func(name string) mux.ServerStreamInterceptor {
		return func(ctx context.Context, info mux.CallInfo, payload []byte, next mux.StreamRunner) error {
			sj.add("%s>", name)
			sj.info(info)
			err := next(context.WithValue(ctx, ctxKey{}, name), info, payload)
			sj.add("<%s %s", name, mux.ErrorKind(err, true))
			return err
		}
	}
	ccfg := mux.Config{Peer: "srv", ClientStreamInterceptors: []mux.ClientStreamInterceptor{cic("c1"), cic("c2")}}
	scfg := mux.Config{Peer: "cli", ServerStreamInterceptors: []mux.ServerStreamInterceptor{sic("s1"), sic("s2")}}
	p := newPair(t, transports[1], interceptRegistry(t), ccfg, scfg)
	ctx := testCtx(t)
	for _, h := range []handlers.HandlerID{hsWho, hsHWho} {
		st, err := p.client.NewStream(ctx, h, nil)
		if err != nil {
			t.Fatal(err)
		}
		rs := streamtest.Drain(t, st, testTimeout)
		if len(rs) != 1 || string(rs[0].Msg) != "s2" {
			t.Fatalf("%v: responses %+v, want the innermost interceptor's value s2", h, rs)
		}
		lines, infos := cj.take()
		if want := []string{"c1>", "c2>", "<c2 ", "<c1 "}; !slices.Equal(lines, want) {
			t.Fatalf("client stream interceptors ran %q, want %q", lines, want)
		}
		if want := (mux.CallInfo{Handler: h, Peer: "srv", Stream: true}); infos[0] != want {
			t.Fatalf("client CallInfo %+v, want %+v", infos[0], want)
		}
		// The server's interceptors return once the handler has: Drain
		// saw the stream's end, which follows.
		lines, infos = sj.take()
		if want := []string{"s1>", "s2>", "<s2 ", "<s1 "}; !slices.Equal(lines, want) {
			t.Fatalf("server stream interceptors ran %q, want %q", lines, want)
		}
		if want := (mux.CallInfo{Handler: h, Peer: "cli", Stream: true}); infos[0] != want {
			t.Fatalf("server CallInfo %+v, want %+v", infos[0], want)
		}
	}

	// OpenStream goes through the same interceptors; a handler's error is
	// the server interceptors' outcome.
	raw, err := p.client.OpenStream(ctx, hsFails, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Recv(); err == nil || err == io.EOF || !strings.Contains(err.Error(), "stream says no") {
		t.Fatalf("failing stream: %v", err)
	}
	if lines, _ := cj.take(); len(lines) != 4 {
		t.Fatalf("OpenStream: client interceptors ran %q", lines)
	}
	if lines, _ := sj.take(); lines[3] != "<s1 handler" {
		t.Fatalf("failing stream: server interceptors saw %q", lines)
	}
	// An open that fails is the client interceptors' outcome.
	if _, err := p.client.NewStream(ctx, hMissing, nil); !errors.Is(err, mux.ErrUnknownHandler) {
		t.Fatalf("unknown stream handler: %v", err)
	}
	if lines, _ := cj.take(); lines[3] != "<c1 unknown" {
		t.Fatalf("unknown stream handler: client interceptors saw %q", lines)
	}
}

// TestInterceptorsAllocs: interceptors on both sides add no allocation to
// a round trip (TestRequestRecycleAllocs: one).
func TestInterceptorsAllocs(t *testing.T) {
	if mux.RaceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	var calls int
	cic := func(ctx context.Context, info mux.CallInfo, req []byte, next mux.Invoker) ([]byte, error) {
		calls++
		return next(ctx, info, req)
	}
	sic := func(ctx context.Context, info mux.CallInfo, req []byte, next mux.ServerHandler) ([]byte, error) {
		return next(ctx, info, req)
	}
	p := newPair(t, transports[1], echoRegistry(t),
		mux.Config{ClientInterceptors: []mux.ClientInterceptor{cic, cic}},
		mux.Config{ServerInterceptors: []mux.ServerInterceptor{sic, sic}})
	ctx := context.Background()
	payload := make([]byte, 512)
	call := func() {
		resp, err := p.client.Request(ctx, hEcho, payload)
		if err != nil || len(resp) != len(payload) {
			t.Fatalf("echo: %d bytes, %v", len(resp), err)
		}
		mux.Recycle(resp)
	}
	for range 100 {
		call()
	}
	if n := testing.AllocsPerRun(500, call); n > 1.2 {
		t.Fatalf("%.2f allocations per intercepted round trip, want 1", n)
	}
	if calls != 2*601 {
		t.Fatalf("client interceptors ran %d times, want %d", calls, 2*601)
	}
}

// TestErrorKind: every outcome maps to one of ErrorKinds.
func TestErrorKind(t *testing.T) {
	for _, tc := range []struct {
		err    error
		server bool
		want   string
	}{
		{nil, false, ""},
		{errors.New("x"), true, "handler"},
		{errors.New("x"), false, "other"},
		{context.Canceled, true, "canceled"},
		{fmt.Errorf("wrapped: %w", context.DeadlineExceeded), false, "deadline"},
		{mux.ErrDisconnected, false, "disconnected"},
		{mux.ErrMessageTooLarge, false, "too_large"},
		{mux.ErrTooManyStreams, false, "busy"},
		{mux.ErrProtocol, false, "other"},
	} {
		if got := mux.ErrorKind(tc.err, tc.server); got != tc.want {
			t.Errorf("ErrorKind(%v, %v) = %q, want %q", tc.err, tc.server, got, tc.want)
		}
		if tc.want != "" && !slices.Contains(mux.ErrorKinds(), tc.want) {
			t.Errorf("%q is not in ErrorKinds", tc.want)
		}
	}
}
