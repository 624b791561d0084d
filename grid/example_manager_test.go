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
	hosts := []string{a, b} // each node lists the other

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

// A node joins a running mesh: a lists only itself at first, then adds b
// with SetHosts, and removes it again; calls to a removed peer fail at
// once with ErrPeerRemoved, and its Connection ends in StateRemoved.
func ExampleManager_SetHosts() {
	lnA, _ := net.Listen("tcp", "127.0.0.1:0")
	lnB, _ := net.Listen("tcp", "127.0.0.1:0")
	a, b := "http://"+lnA.Addr().String(), "http://"+lnB.Addr().String()

	nodeA, stopA := startNode(lnA, a, []string{a})
	defer stopA()
	_, stopB := startNode(lnB, b, []string{a, b})
	defer stopB()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	changed := nodeA.MembershipChanged()
	if err := nodeA.SetHosts([]string{a, b}); err != nil {
		panic(err)
	}
	<-changed // closed by the change: a Dispatcher, say, learns of b without polling
	conn := nodeA.Connection(b)
	if err := conn.WaitForConnect(ctx); err != nil {
		panic(err)
	}
	out, err := conn.Request(ctx, Upper, []byte("joined"))
	fmt.Println(string(out), err)

	if err := nodeA.SetHosts([]string{a}); err != nil {
		panic(err)
	}
	_, err = conn.Request(ctx, Upper, []byte("too late"))
	fmt.Println(errors.Is(err, grid.ErrPeerRemoved), nodeA.Connection(b) == nil)
	for { // nothing in flight: the drain ends at once
		ch := conn.StateChanged() // before reading the state
		if conn.State() == grid.StateRemoved {
			break
		}
		select {
		case <-ch:
		case <-ctx.Done():
			panic(ctx.Err())
		}
	}
	fmt.Println(conn.State())
	// Output:
	// JOINED <nil>
	// true true
	// removed
}
