package grid

import (
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gridmesh/gridmesh/grid/gridmetrics"
	"github.com/gridmesh/gridmesh/grid/gridotel"
	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

// chainInterceptors puts in o.Mux the interceptors every session runs, in
// order: the grid's tracing (TracerProvider), its metrics of streams
// (unless DisableMetrics), then Options' own lists, then those Mux had.
// The metrics of single requests are the sessions' observer
// (mux.Config.Observer), before Mux's own if it had one: it sees each
// request outside every interceptor, for less than an interceptor costs.
func (o *Options) chainInterceptors() {
	var c []mux.ClientInterceptor
	var s []mux.ServerInterceptor
	var cs []mux.ClientStreamInterceptor
	var ss []mux.ServerStreamInterceptor
	if o.TracerProvider != nil {
		t := gridotel.New(o.TracerProvider, nil)
		o.tracing = t
		c, s, cs, ss = append(c, t.Client), append(s, t.Server), append(cs, t.ClientStream), append(ss, t.ServerStream)
	}
	if !o.DisableMetrics {
		m := gridmetrics.New()
		o.metrics = m
		cs, ss = append(cs, m.ClientStream), append(ss, m.ServerStream)
		if user := o.Mux.Observer; user != nil {
			o.Mux.Observer = observers{m, user}
		} else {
			o.Mux.Observer = m
		}
		if user := o.Mux.OnStreamMessage; user != nil {
			o.Mux.OnStreamMessage = func(h handlers.HandlerID, serving, in bool) {
				m.OnStreamMessage(h, serving, in)
				user(h, serving, in)
			}
		} else {
			o.Mux.OnStreamMessage = m.OnStreamMessage
		}
	}
	o.Mux.ClientInterceptors = slices.Concat(c, o.ClientInterceptors, o.Mux.ClientInterceptors)
	o.Mux.ServerInterceptors = slices.Concat(s, o.ServerInterceptors, o.Mux.ServerInterceptors)
	o.Mux.ClientStreamInterceptors = slices.Concat(cs, o.ClientStreamInterceptors, o.Mux.ClientStreamInterceptors)
	o.Mux.ServerStreamInterceptors = slices.Concat(ss, o.ServerStreamInterceptors, o.Mux.ServerStreamInterceptors)
}

// rttBuckets are the upper bounds of gridmesh_peer_ping_rtt_seconds:
// 100 µs doubling to about 1.6 s.
var rttBuckets = prometheus.ExponentialBuckets(0.0001, 2, 15)

// rttHist is a connection's histogram of ping round trips, counted with
// atomics (a prometheus.HistogramVec child would stay behind a removed
// peer, or be shared with a re-added one).
type rttHist struct {
	counts [16]atomic.Uint64 // per bucket of rttBuckets, then +Inf
	sum    atomic.Int64      // nanoseconds
}

func (h *rttHist) observe(d time.Duration) {
	i, _ := slices.BinarySearch(rttBuckets, d.Seconds())
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// metric returns the histogram as a constant metric labelled host.
func (h *rttHist) metric(host string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(rttBuckets))
	var n uint64
	for i, le := range rttBuckets {
		n += h.counts[i].Load()
		buckets[le] = n
	}
	n += h.counts[len(rttBuckets)].Load()
	return prometheus.MustNewConstHistogram(rttDesc, n, time.Duration(h.sum.Load()).Seconds(), buckets, host)
}

var (
	rttDesc = prometheus.NewDesc("gridmesh_peer_ping_rtt_seconds",
		"Round trips of the liveness pings to the peer.", []string{"peer"}, nil)
	reconnectsDesc = prometheus.NewDesc("gridmesh_peer_reconnects_total",
		"Sessions established with the peer after the first.", []string{"peer"}, nil)
)

// Collector returns the Manager's Prometheus metrics: per handler on both
// sides (package grid/gridmetrics: calls, errors by kind, latency
// histograms, streams opened, active and their messages) and per current
// peer (gridmesh_peer_ping_rtt_seconds, a histogram of the liveness
// pings' round trips, and gridmesh_peer_reconnects_total). Register it in
// a prometheus.Registry. With Options.DisableMetrics it collects nothing.
// The per-peer counters of MetricsHandler are not in it.
func (m *Manager) Collector() prometheus.Collector { return managerCollector{m} }

type managerCollector struct{ m *Manager }

func (c managerCollector) Describe(ch chan<- *prometheus.Desc) {
	if c.m.opts.metrics == nil {
		return
	}
	c.m.opts.metrics.Describe(ch)
	ch <- rttDesc
	ch <- reconnectsDesc
}

func (c managerCollector) Collect(ch chan<- prometheus.Metric) {
	if c.m.opts.metrics == nil {
		return
	}
	c.m.opts.metrics.Collect(ch)
	for _, conn := range c.m.Connections() {
		ch <- conn.rttHist.metric(conn.host)
		ch <- prometheus.MustNewConstMetric(reconnectsDesc, prometheus.CounterValue, float64(conn.Stats().Reconnects), conn.host)
	}
}

// observers is a mux.RequestObserver that tells two, in order: the grid's
// metrics, then the one a user set in Options.Mux.
type observers [2]mux.RequestObserver

func (os observers) RequestBegun(h handlers.HandlerID, serving bool) {
	os[0].RequestBegun(h, serving)
	os[1].RequestBegun(h, serving)
}

func (os observers) RequestDone(h handlers.HandlerID, serving bool, d time.Duration, err error) {
	os[0].RequestDone(h, serving, d, err)
	os[1].RequestDone(h, serving, d, err)
}
