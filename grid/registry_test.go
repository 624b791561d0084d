package grid

import (
	"context"
	"net/http"
	"testing"

	"github.com/gridmesh/gridmesh/handlers"
)

// TestOptionsRegistry: the handlers registered in Options.Registry before
// NewManager are the ones the Manager serves, from a peer's first call
// on, with nothing registered on the Manager itself.
func TestOptionsRegistry(t *testing.T) {
	lns, names := listen(t, 2)
	reg := new(handlers.Registry)
	must(t, reg.RegisterSingle(hWho, func(_ context.Context, p []byte) ([]byte, error) {
		return []byte("registry:" + string(p)), nil
	}))
	opts := baseOptions(names[1], names)
	opts.Registry = reg
	m, err := NewManager(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if m.Registry() != reg {
		t.Fatal("the Manager does not serve from Options.Registry")
	}
	mux := http.NewServeMux()
	mux.Handle(DefaultRoutePath, m.Handler())
	srv := &http.Server{Handler: mux}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lns[1])
	}()
	t.Cleanup(func() {
		must(t, m.Close())
		_ = srv.Close()
		<-served
	})

	a := startNode(t, lns[0], baseOptions(names[0], names))
	c := a.m.Connection(names[1])
	waitFor(t, "the connection", func() bool { return c.State() == StateConnected })
	out, err := c.Request(testCtx(t), hWho, []byte("x"))
	if err != nil || string(out) != "registry:x" {
		t.Fatalf("first call: %q, %v", out, err)
	}
}
