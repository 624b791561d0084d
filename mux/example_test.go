package mux_test

import (
	"bytes"
	"context"
	"fmt"
	"net"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

var upper = handlers.New(20, "upper")

func ExampleSession_Request() {
	// Two sessions over an in-memory pipe; over TCP it is the same.
	a, b := net.Pipe()
	reg := new(handlers.Registry)
	reg.RegisterSingle(upper, func(_ context.Context, p []byte) ([]byte, error) {
		return bytes.ToUpper(p), nil
	})
	client, _ := mux.NewSession(a, nil, mux.Config{})
	server, _ := mux.NewSession(b, reg, mux.Config{})
	defer server.Close()
	defer client.Close()

	out, err := client.Request(context.Background(), upper, []byte("hello"))
	fmt.Println(string(out), err)

	_, err = client.Request(context.Background(), handlers.HandlerID(21), nil)
	fmt.Println(err)
	// Output:
	// HELLO <nil>
	// mux: handler(21): remote: unknown handler handler(21)
}

var price = handlers.New(184, "price")

// A handler that answers from memory in microseconds can run inline, on
// the connection's reader, sparing the hand-off to a worker.
func ExampleSession_Request_inline() {
	a, b := net.Pipe()
	prices := map[string]string{"apple": "3", "pear": "4"}
	reg := new(handlers.Registry)
	reg.RegisterInline(price, func(_ context.Context, p []byte) ([]byte, error) {
		if v, ok := prices[string(p)]; ok {
			return []byte(v), nil
		}
		return nil, fmt.Errorf("no price for %q", p)
	})
	client, _ := mux.NewSession(a, nil, mux.Config{})
	server, _ := mux.NewSession(b, reg, mux.Config{})
	defer server.Close()
	defer client.Close()

	out, err := client.Request(context.Background(), price, []byte("pear"))
	fmt.Println(string(out), err)
	_, err = client.Request(context.Background(), price, []byte("plum"))
	fmt.Println(err)
	fmt.Println(server.Stats().ServedInline, "served inline")
	// Output:
	// 4 <nil>
	// mux: price(184): remote: no price for "plum"
	// 2 served inline
}
