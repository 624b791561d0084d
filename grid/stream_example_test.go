package grid_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/gridmesh/gridmesh/grid"
	"github.com/gridmesh/gridmesh/handlers"
)

// shout is a stream handler: it answers every message with the initial
// payload followed by the message in upper case.
var shout = handlers.New(200, "shout")

func ExampleConnection_NewStream() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Two nodes on loopback, each a Manager mounted on its own HTTP server.
	var lns [2]net.Listener
	var hosts []string
	for i := range lns {
		lns[i], _ = net.Listen("tcp", "127.0.0.1:0")
		hosts = append(hosts, "http://"+lns[i].Addr().String())
	}
	var nodes [2]*grid.Manager
	for i := range nodes {
		m, err := grid.NewManager(ctx, grid.Options{Local: hosts[i], Hosts: hosts, Secret: []byte("example secret")})
		if err != nil {
			fmt.Println(err)
			return
		}
		defer m.Close()
		m.RegisterStreamHandler(shout, handlers.StreamHandler{
			InCapacity: 4, OutCapacity: 4, // the caller learns these when the stream opens
			Serve: func(ctx context.Context, prefix []byte, st handlers.ServerStream) error {
				for {
					msg, err := st.Recv(ctx)
					if err == io.EOF {
						return nil // the caller closed its input: end the stream cleanly
					}
					if err != nil {
						return err // the stream's context ended
					}
					if err := st.Send(ctx, append(bytes.Clone(prefix), bytes.ToUpper(msg)...)); err != nil {
						return err
					}
				}
			},
		})
		routes := http.NewServeMux()
		routes.Handle(grid.DefaultRoutePath, m.Handler())
		srv := &http.Server{Handler: routes}
		go srv.Serve(lns[i])
		defer srv.Close()
		nodes[i] = m
	}

	// Node 0 opens a stream to node 1's handler.
	c := nodes[0].Connection(hosts[1])
	if err := c.WaitForConnect(ctx); err != nil {
		fmt.Println(err)
		return
	}
	st, err := c.NewStream(ctx, shout, []byte("> "))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, word := range []string{"hello", "grid"} {
		if err := st.Send(ctx, []byte(word)); err != nil {
			fmt.Println(err)
			return
		}
		r := <-st.Responses
		fmt.Println(string(r.Msg), r.Err)
	}
	st.CloseSend() // ends the handler's input; it returns nil
	for r := range st.Responses {
		fmt.Println("unexpected:", r)
	}
	fmt.Println("stream ended; streams open:", c.Stats().StreamsOut)
	// Output:
	// > HELLO <nil>
	// > GRID <nil>
	// stream ended; streams open: 0
}
