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
// 100 µs doubling to about 6.6 s.
var DurationBuckets = prometheus.ExponentialBuckets(0.0001, 2, 17)

// Sides, the value of the side label.
const (
	Client = "client"
	Server = "server"
)

// Metrics counts calls per handler. Its methods are the interceptors
// (Client, Server, ClientStream, ServerStream) and the stream message
// hook (OnStreamMessage) to put in a mux.Config; it is a
// prometheus.Collector.
type Metrics struct {
	calls, errs, opened, msgs *prometheus.CounterVec
	active                    *prometheus.GaugeVec
	dur                       *prometheus.HistogramVec

	mu    sync.Mutex // serialises making entries
	sides [2]*[handlers.MaxHandlerID + 1]atomic.Pointer[entry]
}

// entry is one handler's series on one side, resolved once.
type entry struct {
	calls prometheus.Counter
	dur   prometheus.Observer
	errs  [numKinds]atomic.Pointer[prometheus.Counter] // made on the first error of the kind
	strm  atomic.Pointer[streamEntry]                  // made on the first stream
	id    handlers.HandlerID
	side  string
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
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gridmesh_rpc_calls_total",
			Help: "Calls begun: requests sent or served, streams opened or served."}, labels),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gridmesh_rpc_errors_total",
			Help: "Calls that failed, by kind."}, append(labels[:3:3], "kind")),
		dur: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "gridmesh_rpc_duration_seconds",
			Help:    "A request's round trip (client) or its handler's run (server); a stream's life (client) or its handler's run (server).",
			Buckets: DurationBuckets}, labels),
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
	return []prometheus.Collector{m.calls, m.errs, m.dur, m.opened, m.active, m.msgs}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
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
	lv := e.labels()
	e.calls = m.calls.WithLabelValues(lv...)
	e.dur = m.dur.WithLabelValues(lv...)
	m.sides[side][h].Store(e)
	return e
}

func (e *entry) labels() []string {
	return []string{e.side, e.id.Name(), strconv.Itoa(int(e.id))}
}

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

// done records a finished call.
func (m *Metrics) done(e *entry, start time.Duration, err error) {
	e.dur.Observe((now() - start).Seconds())
	if err != nil {
		m.fail(e, err)
	}
}

// panicked records a call during which an interceptor inside panicked
// (on the calling side a panic is not recovered: it goes on up to the
// caller): an error of kind "panic".
func (m *Metrics) panicked(e *entry, start time.Duration) {
	e.dur.Observe((now() - start).Seconds())
	m.failKind(e, panicKind)
}

var panicKind = kindIndex("panic")

// Client counts a request this side sends.
func (m *Metrics) Client(ctx context.Context, info mux.CallInfo, req []byte, next mux.Invoker) ([]byte, error) {
	e := m.get(false, info.Handler)
	e.calls.Inc()
	start := now()
	returned := false
	defer func() {
		if !returned {
			m.panicked(e, start)
		}
	}()
	resp, err := next(ctx, info, req)
	returned = true
	m.done(e, start, err)
	return resp, err
}

// Server counts a request this side serves.
func (m *Metrics) Server(ctx context.Context, info mux.CallInfo, req []byte, next mux.ServerHandler) ([]byte, error) {
	e := m.get(true, info.Handler)
	e.calls.Inc()
	start := now()
	resp, err := next(ctx, info, req)
	m.done(e, start, err)
	return resp, err
}

// ClientStream counts a stream this side opens, and its end.
func (m *Metrics) ClientStream(ctx context.Context, info mux.CallInfo, payload []byte, next mux.StreamOpener) (*mux.Stream, error) {
	e := m.get(false, info.Handler)
	e.calls.Inc()
	start := now()
	returned := false
	defer func() {
		if !returned {
			m.panicked(e, start)
		}
	}()
	st, err := next(ctx, info, payload)
	returned = true
	if err != nil {
		m.done(e, start, err)
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
	se.m, se.e, se.s, se.start = m, e, s, start
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
	start time.Duration
	fn    func(error) // ended
}

var streamEnds sync.Pool

// ended is the stream's quick end hook (mux.Stream.OnEndQuick), run once.
func (se *streamEnd) ended(err error) {
	se.s.active.Dec()
	se.m.done(se.e, se.start, err)
	se.m, se.e, se.s = nil, nil, nil
	streamEnds.Put(se)
}

// ServerStream counts a stream this side serves.
func (m *Metrics) ServerStream(ctx context.Context, info mux.CallInfo, payload []byte, next mux.StreamRunner) error {
	e := m.get(true, info.Handler)
	e.calls.Inc()
	s := m.stream(e)
	s.opened.Inc()
	s.active.Inc()
	start := now()
	err := next(ctx, info, payload)
	s.active.Dec()
	m.done(e, start, err)
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
