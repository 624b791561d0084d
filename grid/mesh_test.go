package grid

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// TestMesh runs five nodes in a full mesh; every node calls every other,
// all at once.
func TestMesh(t *testing.T) {
	const n, calls = 5, 20
	lns, names := listen(t, n)
	nodes := make([]*node, n)
	for i := range nodes {
		nodes[i] = startNode(t, lns[i], baseOptions(names[i], names))
	}
	ctx := testCtx(t)
	for _, nd := range nodes {
		must(t, nd.m.WaitForConnect(ctx))
	}
	var wg sync.WaitGroup
	errs := make(chan error, n*n*calls)
	for _, from := range nodes {
		for _, to := range names {
			if to == from.name {
				continue
			}
			for k := range calls {
				wg.Go(func() {
					if err := from.call(ctx, to, fmt.Sprint(k)); err != nil {
						errs <- err
					}
				})
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	dials := 0
	for _, nd := range nodes {
		st := nd.m.Stats()
		if st.Connected != n-1 || st.RequestsOut != (n-1)*calls || st.Served != (n-1)*calls {
			t.Errorf("%s: stats %+v", nd.name, st)
		}
		dialed := 0
		for _, c := range st.Peers {
			if c.Dials {
				dialed++
			}
			if c.Connects != 1 {
				t.Errorf("%s→%s: %d connects, want 1", nd.name, c.Host, c.Connects)
			}
		}
		dials += dialed
	}
	if dials != n*(n-1)/2 {
		t.Errorf("%d dialing sides for %d pairs, want one each", dials, n*(n-1)/2)
	}
}

func TestOptionsErrors(t *testing.T) {
	h := []string{"http://a:1", "http://b:1"}
	cases := []struct {
		name string
		opts Options
		want string
	}{
		{"empty", Options{Local: "http://a:1", Secret: testSecret}, "Hosts: empty"},
		{"local missing", Options{Local: "http://c:1", Hosts: h, Secret: testSecret}, `"http://c:1" is not one of Hosts`},
		{"duplicate", Options{Local: "http://a:1", Hosts: append(h, "http://a:1"), Secret: testSecret}, "listed twice"},
		{"bad url", Options{Local: "http://a:1", Hosts: append(h, "ftp://x:1"), Secret: testSecret}, "scheme"},
		{"no host", Options{Local: "http://a:1", Hosts: append(h, "http://"), Secret: testSecret}, "want scheme://host"},
		{"no auth", Options{Local: "http://a:1", Hosts: h}, "no Secret or Authenticator"},
		{"negative", Options{Local: "http://a:1", Hosts: h, Secret: testSecret, PingTimeout: -1}, "PingTimeout: negative"},
		{"mux", Options{Local: "http://a:1", Hosts: h, Secret: testSecret}, ""},
	}
	cases[len(cases)-1].opts.Mux.MaxInFlight = -1
	cases[len(cases)-1].want = "Mux:"
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := NewManager(context.Background(), c.opts)
			if err == nil {
				m.Close()
				t.Fatal("no error")
			}
			if !contains(err.Error(), c.want) || !isInvalid(err) {
				t.Fatalf("error %q, want it to contain %q", err, c.want)
			}
		})
	}
}
