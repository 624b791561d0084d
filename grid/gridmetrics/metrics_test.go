package gridmetrics_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gridmesh/gridmesh/grid/gridmetrics"
	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

var (
	hOK   = handlers.New(1, "ok")
	hBad  = handlers.New(2, "bad")
	hEcho = handlers.New(3, "echo-stream")
)

// pair connects a client and a server session, each counted by its own
// Metrics.
func pair(t *testing.T) (client *mux.Session, cm, sm *gridmetrics.Metrics) {
	t.Helper()
	reg := new(handlers.Registry)
	reg.RegisterSingle(hOK, func(_ context.Context, p []byte) ([]byte, error) { return p, nil })
	reg.RegisterSingle(hBad, func(context.Context, []byte) ([]byte, error) { return nil, errors.New("bad") })
	reg.RegisterStream(hEcho, handlers.StreamHandler{InCapacity: 4, OutCapacity: 4,
		Serve: func(ctx context.Context, _ []byte, st handlers.ServerStream) error {
			for {
				msg, err := st.Recv(ctx)
				if err != nil {
					return nil
				}
				if err := st.Send(ctx, msg); err != nil {
					return err
				}
			}
		}})
	cm, sm = gridmetrics.New(), gridmetrics.New()
	config := func(m *gridmetrics.Metrics) mux.Config {
		return mux.Config{
			Observer:                 m,
			ClientStreamInterceptors: []mux.ClientStreamInterceptor{m.ClientStream}, ServerStreamInterceptors: []mux.ServerStreamInterceptor{m.ServerStream},
			OnStreamMessage: m.OnStreamMessage,
		}
	}
	a, b := net.Pipe()
	c, err := mux.NewSession(a, nil, config(cm))
	if err != nil {
		t.Fatal(err)
	}
	s, err := mux.NewSession(b, reg, config(sm))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		s.Close()
	})
	return c, cm, sm
}

func counter(t *testing.T, c prometheus.Collector, name string, labels ...string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for i := 0; i < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return -1 // no such series
}

// TestMetricsCount: calls, errors, durations, streams and messages are
// counted per handler on each side; the active gauge reads 0 once the
// streams ended.
func TestMetricsCount(t *testing.T) {
	c, cm, sm := pair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 3 {
		if _, err := c.Request(ctx, hOK, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Request(ctx, hBad, nil); err == nil {
		t.Fatal("bad: no error")
	}
	st, err := c.NewStream(ctx, hEcho, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := counter(t, cm, "gridmesh_rpc_streams_active", "side", "client", "handler", "echo-stream"); got != 1 {
		t.Fatalf("client streams active while open: %v", got)
	}
	for range 2 {
		st.Requests <- []byte("m")
		if r := <-st.Responses; r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	close(st.Requests)
	for r := range st.Responses {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	ended := make(chan struct{})
	st.OnEnd(func(error) { close(ended) }) // after the metrics' own
	<-ended

	for _, tc := range []struct {
		m      *gridmetrics.Metrics
		name   string
		labels []string
		want   float64
	}{
		{cm, "gridmesh_rpc_calls_total", []string{"side", "client", "handler", "ok", "handler_id", "1"}, 3},
		{sm, "gridmesh_rpc_calls_total", []string{"side", "server", "handler", "ok"}, 3},
		{cm, "gridmesh_rpc_duration_seconds", []string{"side", "client", "handler", "ok"}, 3},
		{sm, "gridmesh_rpc_duration_seconds", []string{"side", "server", "handler", "bad"}, 1},
		{cm, "gridmesh_rpc_errors_total", []string{"side", "client", "handler", "bad", "kind", "handler"}, 1},
		{sm, "gridmesh_rpc_errors_total", []string{"side", "server", "handler", "bad", "kind", "handler"}, 1},
		{cm, "gridmesh_rpc_errors_total", []string{"handler", "ok"}, -1},
		{cm, "gridmesh_rpc_streams_opened_total", []string{"side", "client", "handler", "echo-stream"}, 1},
		{sm, "gridmesh_rpc_streams_opened_total", []string{"side", "server", "handler", "echo-stream"}, 1},
		{cm, "gridmesh_rpc_streams_active", []string{"side", "client"}, 0},
		{sm, "gridmesh_rpc_streams_active", []string{"side", "server"}, 0},
		{cm, "gridmesh_rpc_stream_messages_total", []string{"side", "client", "direction", "out"}, 2},
		{cm, "gridmesh_rpc_stream_messages_total", []string{"side", "client", "direction", "in"}, 2},
		{sm, "gridmesh_rpc_stream_messages_total", []string{"side", "server", "direction", "in"}, 2},
		{sm, "gridmesh_rpc_stream_messages_total", []string{"side", "server", "direction", "out"}, 2},
		{cm, "gridmesh_rpc_duration_seconds", []string{"side", "client", "handler", "echo-stream"}, 1},
	} {
		if got := counter(t, tc.m, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
}

// TestMetricsNoAllocs: counting a call, its duration and an error
// included, allocates nothing once the handler's series exist.
func TestMetricsNoAllocs(t *testing.T) {
	m := gridmetrics.New()
	errBad := errors.New("bad")
	call := func() {
		m.RequestBegun(hOK, false)
		m.RequestBegun(hOK, true)
		m.RequestDone(hOK, true, time.Millisecond, errBad)
		m.RequestDone(hOK, false, 2*time.Millisecond, nil)
		m.OnStreamMessage(hEcho, true, true)
	}
	call()
	if n := testing.AllocsPerRun(1000, call); n != 0 {
		t.Fatalf("%.2f allocations per counted call", n)
	}
	// ok on either side, and echo-stream's on the serving side.
	if got := testutil.CollectAndCount(m, "gridmesh_rpc_duration_seconds"); got != 3 {
		t.Fatalf("%d duration series, want 3", got)
	}
}
