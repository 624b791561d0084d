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
