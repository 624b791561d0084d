package mux_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"

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
