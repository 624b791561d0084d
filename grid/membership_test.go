package grid

import (
	"testing"
)

// TestHostListsDiffer: two nodes whose lists differ (each names a third
// node the other does not know, as during a rolling change of membership)
// still connect, since each lists the other; a node that lists neither is
// refused.
func TestHostListsDiffer(t *testing.T) {
	lns, names := listen(t, 2)
	a := startNode(t, lns[0], baseOptions(names[0], []string{names[0], names[1], "http://127.0.0.1:1"}))
	b := startNode(t, lns[1], baseOptions(names[1], []string{"http://127.0.0.1:2", names[1], names[0]}))
	ctx := testCtx(t)
	must(t, a.m.Connection(names[1]).WaitForConnect(ctx))
	must(t, b.m.Connection(names[0]).WaitForConnect(ctx))
	must(t, a.call(ctx, names[1], "x"))
	must(t, b.call(ctx, names[0], "y"))
}
