package gridmetrics

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

// DurationBuckets are the upper bounds of gridmesh_rpc_duration_seconds:
// 100 µs doubling to about 6.6 s. They are for reading: the histograms
// keep their own copy.
var DurationBuckets = prometheus.ExponentialBuckets(0.0001, 2, numBuckets)

// Sides, the value of the side label.
const (
	Client = "client"
	Server = "server"
)

// Metrics counts calls per handler. It is a mux.RequestObserver
// (RequestBegun, RequestDone: mux.Config.Observer) for single requests;
// its stream interceptors (ClientStream, ServerStream) and stream
// message hook (OnStreamMessage) go in a mux.Config too; it is a
// prometheus.Collector.
type Metrics struct {
	errs, opened, msgs *prometheus.CounterVec
	active             *prometheus.GaugeVec
	calls, dur         *prometheus.Desc // from the entries' hists

	mu      sync.Mutex // serialises making entries; guards entries
	entries []*entry   // in the order made, for Collect
	sides   [2]*[handlers.MaxHandlerID + 1]atomic.Pointer[entry]
}

// entry is one handler's series on one side, resolved once.
type entry struct {
	errs [numKinds]atomic.Pointer[prometheus.Counter] // made on the first error of the kind
	strm atomic.Pointer[streamEntry]                  // made on the first stream
	id   handlers.HandlerID
	side string
	lv   []string // label values: side, handler, handler_id
	hist hist     // calls and durations
}

type streamEntry struct {
	opened, in, out prometheus.Counter
	active          prometheus.Gauge
}

var kinds = mux.ErrorKinds()

const numKinds = 9

// New returns Metrics with no series yet.
func New() *Metrics {
	labels := []string{"side", "handler", "handler_id"}
	m := &Metrics{
		calls: prometheus.NewDesc("gridmesh_rpc_calls_total",
			"Calls begun: requests sent or served, streams opened or served.", labels, nil),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gridmesh_rpc_errors_total",
			Help: "Calls that failed, by kind."}, append(labels[:3:3], "kind")),
		dur: prometheus.NewDesc("gridmesh_rpc_duration_seconds",
			"A request's round trip to its answer's arrival, or to Request's return with client interceptors (client), or from its arrival to its handler's return (server); a stream's life (client) or its handler's run (server).",
			labels, nil),
		opened: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gridmesh_rpc_streams_opened_total",
			Help: "Streams opened (client) or served (server)."}, labels),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "gridmesh_rpc_streams_active",
			Help: "Streams open now."}, labels),
		msgs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gridmesh_rpc_stream_messages_total",
			Help: "Whole stream messages received (in) or sent (out)."}, append(labels[:3:3], "direction")),
	}
	m.sides[0] = new([handlers.MaxHandlerID + 1]atomic.Pointer[entry])
	m.sides[1] = new([handlers.MaxHandlerID + 1]atomic.Pointer[entry])
	return m
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.errs, m.opened, m.active, m.msgs}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.calls
	ch <- m.dur
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	entries := m.entries[:len(m.entries):len(m.entries)]
	m.mu.Unlock()
	for _, e := range entries {
		ch <- prometheus.MustNewConstMetric(m.calls, prometheus.CounterValue, float64(e.hist.calls()), e.lv...)
	}
	for _, e := range entries {
		ch <- e.hist.metric(m.dur, e.lv)
	}
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

// get returns h's entry on a side (0 client, 1 server), making it on
// first use. An invalid h (a caller's mistake that mux refuses) counts
// under ID 0.
func (m *Metrics) get(server bool, h handlers.HandlerID) *entry {
	side := 0
	if server {
		side = 1
	}
	if !h.Valid() {
		h = 0
	}
	if e := m.sides[side][h].Load(); e != nil {
		return e
	}
	return m.make(side, h)
}

func (m *Metrics) make(side int, h handlers.HandlerID) *entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.sides[side][h].Load(); e != nil {
		return e
	}
	e := &entry{id: h, side: [2]string{Client, Server}[side]}
	e.lv = []string{e.side, h.Name(), strconv.Itoa(int(h))}
	m.entries = append(m.entries, e)
	m.sides[side][h].Store(e)
	return e
}

// labels returns a copy of the entry's label values, to append to.
func (e *entry) labels() []string { return e.lv[:3:3] }

// fail counts an error of err's kind.
func (m *Metrics) fail(e *entry, err error) {
	m.failKind(e, kindIndex(mux.ErrorKind(err, e.side == Server)))
}

// failKind counts an error of the kind kinds[k].
func (m *Metrics) failKind(e *entry, k int) {
	if c := e.errs[k].Load(); c != nil {
		(*c).Inc()
		return
	}
	c := m.errs.WithLabelValues(append(e.labels(), kinds[k])...)
	e.errs[k].Store(&c) // a racing store resolves the same series
	c.Inc()
}

func kindIndex(kind string) int {
	for i, k := range kinds {
		if k == kind {
			return i
		}
	}
	return numKinds - 1 // "other"
}

// stream returns the entry's stream series, making them on first use.
func (m *Metrics) stream(e *entry) *streamEntry {
	if s := e.strm.Load(); s != nil {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := e.strm.Load(); s != nil {
		return s
	}
	lv := e.labels()
	s := &streamEntry{
		opened: m.opened.WithLabelValues(lv...),
		active: m.active.WithLabelValues(lv...),
		in:     m.msgs.WithLabelValues(append(lv, "in")...),
		out:    m.msgs.WithLabelValues(append(lv, "out")...),
	}
	e.strm.Store(s)
	return s
}

// epoch is the origin of now.
var epoch = time.Now()

// now reads the monotonic clock alone: one clock read where time.Now
// makes two (wall and monotonic), and a call is timed with two of them
// on each side.
func now() time.Duration { return time.Since(epoch) }

// begin counts a call begun and returns its stripe and start time.
func (e *entry) begin() (*stripe, time.Duration) {
	s := e.hist.pick()
	s.calls.Add(1)
	return s, now()
}

// done records a finished call.
func (m *Metrics) done(e *entry, s *stripe, start time.Duration, err error) {
	s.observe(now() - start)
	if err != nil {
		m.fail(e, err)
	}
}

// panicked records a call during which an interceptor inside panicked
// (on the calling side a panic is not recovered: it goes on up to the
// caller): an error of kind "panic".
func (m *Metrics) panicked(e *entry, s *stripe, start time.Duration) {
	s.observe(now() - start)
	m.failKind(e, panicKind)
}

var panicKind = kindIndex("panic")

// RequestBegun counts a request begun (mux.RequestObserver).
func (m *Metrics) RequestBegun(h handlers.HandlerID, serving bool) {
	m.get(serving, h).hist.pick().calls.Add(1)
}

// RequestDone records a request's end (mux.RequestObserver).
func (m *Metrics) RequestDone(h handlers.HandlerID, serving bool, d time.Duration, err error) {
	e := m.get(serving, h)
	e.hist.pick().observe(d)
	if err != nil {
		m.fail(e, err)
	}
}

// ClientStream counts a stream this side opens, and its end.
func (m *Metrics) ClientStream(ctx context.Context, info mux.CallInfo, payload []byte, next mux.StreamOpener) (*mux.Stream, error) {
	e := m.get(false, info.Handler)
	sp, start := e.begin()
	returned := false
	defer func() {
		if !returned {
			m.panicked(e, sp, start)
		}
	}()
	st, err := next(ctx, info, payload)
	returned = true
	if err != nil {
		m.done(e, sp, start, err)
		return st, err
	}
	s := m.stream(e)
	s.opened.Inc()
	s.active.Inc()
	se, _ := streamEnds.Get().(*streamEnd)
	if se == nil {
		se = new(streamEnd)
		se.fn = se.ended
	}
	se.m, se.e, se.s, se.sp, se.start = m, e, s, sp, start
	st.OnEndQuick(se.fn)
	return st, nil
}

// streamEnd counts the end of a stream this side opened; pooled, with its
// function made once, so that counting a stream's end costs no
// allocation.
type streamEnd struct {
	m     *Metrics
	e     *entry
	s     *streamEntry
	sp    *stripe
	start time.Duration
	fn    func(error) // ended
}

var streamEnds sync.Pool

// ended is the stream's quick end hook (mux.Stream.OnEndQuick), run once.
func (se *streamEnd) ended(err error) {
	se.s.active.Dec()
	se.m.done(se.e, se.sp, se.start, err)
	se.m, se.e, se.s, se.sp = nil, nil, nil, nil
	streamEnds.Put(se)
}

// ServerStream counts a stream this side serves.
func (m *Metrics) ServerStream(ctx context.Context, info mux.CallInfo, payload []byte, next mux.StreamRunner) error {
	e := m.get(true, info.Handler)
	s := m.stream(e)
	s.opened.Inc()
	s.active.Inc()
	sp, start := e.begin()
	err := next(ctx, info, payload)
	s.active.Dec()
	m.done(e, sp, start, err)
	return err
}

// OnStreamMessage counts a stream message (mux.Config.OnStreamMessage).
func (m *Metrics) OnStreamMessage(h handlers.HandlerID, serving, in bool) {
	s := m.stream(m.get(serving, h))
	if in {
		s.in.Inc()
	} else {
		s.out.Inc()
	}
}
