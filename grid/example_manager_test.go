package grid_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/gridmesh/gridmesh/grid"
	"github.com/gridmesh/gridmesh/handlers"
)

// Upper is a handler every node of the example serves.
var Upper = handlers.New(1, "upper")

// startNode runs one grid node: a Manager serving Upper, mounted on an
// HTTP server listening on ln. It returns the Manager and a stop func.
func startNode(ln net.Listener, local string, hosts []string) (*grid.Manager, func()) {
	m, err := grid.NewManager(context.Background(), grid.Options{
		Local:  local,
		Hosts:  hosts,
		Secret: []byte("the same secret on every node"),
	})
	if err != nil {
		panic(err)
	}
	err = m.RegisterSingleHandler(Upper, func(_ context.Context, p []byte) ([]byte, error) {
		return bytes.ToUpper(p), nil
	})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle(grid.DefaultRoutePath, m.Handler())
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	return m, func() { m.Close(); srv.Close() }
}

// Two nodes on loopback: each keeps one connection to the other, and
// either side calls the other's handlers over it.
func ExampleManager() {
	lnA, _ := net.Listen("tcp", "127.0.0.1:0")
	lnB, _ := net.Listen("tcp", "127.0.0.1:0")
	a, b := "http://"+lnA.Addr().String(), "http://"+lnB.Addr().String()
	hosts := []string{a, b} // the same list on every node

	nodeA, stopA := startNode(lnA, a, hosts)
	defer stopA()
	nodeB, stopB := startNode(lnB, b, hosts)
	defer stopB()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := nodeA.WaitForConnect(ctx); err != nil {
		panic(err)
	}
	if err := nodeB.WaitForConnect(ctx); err != nil {
		panic(err)
	}
	fromA, err := nodeA.Connection(b).Request(ctx, Upper, []byte("hello from a"))
	fmt.Println(string(fromA), err)
	fromB, err := nodeB.Connection(a).Request(ctx, Upper, []byte("hello from b"))
	fmt.Println(string(fromB), err)
	// Output:
	// HELLO FROM A <nil>
	// HELLO FROM B <nil>
}

// A request made while the peer is down fails at once with
// ErrDisconnected; WaitForConnect waits for the connection instead.
func ExampleConnection_Request() {
	lnA, _ := net.Listen("tcp", "127.0.0.1:0")
	lnB, _ := net.Listen("tcp", "127.0.0.1:0")
	a, b := "http://"+lnA.Addr().String(), "http://"+lnB.Addr().String()
	hosts := []string{a, b}

	nodeA, stopA := startNode(lnA, a, hosts)
	defer stopA()
	conn := nodeA.Connection(b)
	_, err := conn.Request(context.Background(), Upper, []byte("too early"))
	fmt.Println(errors.Is(err, grid.ErrDisconnected))

	_, stopB := startNode(lnB, b, hosts)
	defer stopB()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := conn.WaitForConnect(ctx); err != nil {
		panic(err)
	}
	out, err := conn.Request(ctx, Upper, []byte("in time"))
	fmt.Println(string(out), err, conn.State())
	// Output:
	// true
	// IN TIME <nil> connected
}
