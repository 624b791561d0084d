package mux_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

var (
	greet  = handlers.New(22, "greet")
	secret = handlers.New(23, "secret")
)

// Interceptors on both sides: the caller's logs each call and its
// outcome, the server's refuses one handler and passes the caller's trace
// context on to the handler.
func ExampleConfig_interceptors() {
	type traceKey struct{}
	logCalls := func(ctx context.Context, info mux.CallInfo, req []byte, next mux.Invoker) ([]byte, error) {
		resp, err := next(ctx, info, req)
		fmt.Printf("call %v to %s: %q, error kind %q\n", info.Handler, info.Peer, resp, mux.ErrorKind(err, false))
		return resp, err
	}
	guard := func(ctx context.Context, info mux.CallInfo, req []byte, next mux.ServerHandler) ([]byte, error) {
		if info.Handler == secret {
			return nil, errors.New("forbidden")
		}
		return next(context.WithValue(ctx, traceKey{}, info.TraceParent), info, req)
	}

	reg := new(handlers.Registry)
	reg.RegisterSingle(greet, func(ctx context.Context, p []byte) ([]byte, error) {
		fmt.Println("handler sees trace", ctx.Value(traceKey{}))
		return bytes.ToUpper(p), nil
	})
	reg.RegisterSingle(secret, func(context.Context, []byte) ([]byte, error) { return []byte("the secret"), nil })

	a, b := net.Pipe()
	client, _ := mux.NewSession(a, nil, mux.Config{Peer: "server", ClientInterceptors: []mux.ClientInterceptor{logCalls}})
	server, _ := mux.NewSession(b, reg, mux.Config{Peer: "client", ServerInterceptors: []mux.ServerInterceptor{guard}})
	defer server.Close()
	defer client.Close()

	ctx := mux.WithTraceContext(context.Background(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "")
	client.Request(ctx, greet, []byte("hello"))
	_, err := client.Request(ctx, secret, nil)
	fmt.Println(err)
	// Output:
	// handler sees trace 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
	// call greet(22) to server: "HELLO", error kind ""
	// call secret(23) to server: "", error kind "handler"
	// mux: secret(23): remote: forbidden
}

var ticks = handlers.New(24, "ticks")

// End hooks: a ClientStreamInterceptor counts the streams open with a
// quick hook (it only counts, so it runs as the stream ends, and whoever
// drained the stream sees the count down) and logs each stream's end with
// a hook that may wait (it runs off the session's reader).
func ExampleStream_OnEndQuick() {
	var open atomic.Int64
	logged := make(chan string, 1)
	watch := func(ctx context.Context, info mux.CallInfo, p []byte, next mux.StreamOpener) (*mux.Stream, error) {
		st, err := next(ctx, info, p)
		if err != nil {
			return nil, err
		}
		open.Add(1)
		st.OnEndQuick(func(error) { open.Add(-1) })
		st.OnEnd(func(err error) { logged <- fmt.Sprintf("%v ended: %v", info.Handler, err) })
		return st, nil
	}
	reg := new(handlers.Registry)
	reg.RegisterStream(ticks, handlers.StreamHandler{OutCapacity: 2,
		Serve: func(ctx context.Context, _ []byte, st handlers.ServerStream) error {
			st.Send(ctx, []byte("tick"))
			return st.Send(ctx, []byte("tock"))
		}})
	a, b := net.Pipe()
	client, _ := mux.NewSession(a, nil, mux.Config{ClientStreamInterceptors: []mux.ClientStreamInterceptor{watch}})
	server, _ := mux.NewSession(b, reg, mux.Config{})
	defer server.Close()
	defer client.Close()

	st, _ := client.NewStream(context.Background(), ticks, nil)
	fmt.Println("open:", open.Load())
	for r := range st.Responses {
		fmt.Println(string(r.Msg))
	}
	fmt.Println("open:", open.Load())
	fmt.Println(<-logged)
	// Output:
	// open: 1
	// tick
	// tock
	// open: 0
	// ticks(24) ended: <nil>
}
