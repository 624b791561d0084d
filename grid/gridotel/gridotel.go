package gridotel

import (
	"context"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
)

// ScopeName is the instrumentation scope of the spans.
const ScopeName = "github.com/gridmesh/gridmesh/grid/gridotel"

// Attribute keys of our own.
const (
	HandlerIDKey = attribute.Key("gridmesh.handler.id")
	StreamKey    = attribute.Key("gridmesh.stream")
	PeerKey      = attribute.Key("gridmesh.peer")
)

// Tracing makes the spans of a session's calls. Its methods are the
// interceptors: put Client, Server, ClientStream and ServerStream in a
// mux.Config (or let grid.Options.TracerProvider do it).
type Tracing struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
	spans  sync.Map     // spanKey → *spanSetup
	nspans atomic.Int64 // entries in spans, at most maxSetups
}

// maxSetups bounds the span setups a Tracing keeps. Setups are kept per
// handler, peer, kind and side, so that a span costs no more than its
// start; a node that meets ever more peers (ForgetPeer not called) would
// keep ever more. Past the bound a span's setup is made for it alone:
// slower, but no more memory is held (about 1 KiB an entry: a few MiB at
// most).
const maxSetups = 4096

// spanKey names what a span's name and attributes depend on: nothing of a
// single call, so they are made once per handler, peer, kind and side.
type spanKey struct {
	h      handlers.HandlerID
	peer   string
	stream bool
	kind   trace.SpanKind
}

// spanSetup is a span's name and start options, made once.
type spanSetup struct {
	name string
	opts []trace.SpanStartOption
}

// New returns a Tracing whose spans tp makes, carrying the trace context
// with prop (nil: propagation.TraceContext, the W3C trace context; the
// wire carries traceparent and tracestate, nothing else).
func New(tp trace.TracerProvider, prop propagation.TextMapPropagator) *Tracing {
	if prop == nil {
		prop = propagation.TraceContext{}
	}
	return &Tracing{tracer: tp.Tracer(ScopeName), prop: prop}
}

// ForgetPeer drops what the Tracing keeps for peer (the span setups of
// its calls), for a peer gone for good; a later call with it makes them
// again. The grid calls it when it removes a peer.
func (t *Tracing) ForgetPeer(peer string) {
	t.spans.Range(func(k, _ any) bool {
		if k.(spanKey).peer == peer {
			if _, ok := t.spans.LoadAndDelete(k); ok {
				t.nspans.Add(-1)
			}
		}
		return true
	})
}

// Client traces a single request: a client span, whose context the
// request carries to the peer.
func (t *Tracing) Client(ctx context.Context, info mux.CallInfo, req []byte, next mux.Invoker) ([]byte, error) {
	ctx, span := t.start(ctx, info, trace.SpanKindClient)
	returned := false
	defer func() {
		if !returned {
			endPanic(span)
		}
	}()
	resp, err := next(t.inject(ctx), info, req)
	returned = true
	end(span, err, false)
	return resp, err
}

// Server traces a single request served: a server span, child of the
// caller's span, in the handler's context.
func (t *Tracing) Server(ctx context.Context, info mux.CallInfo, req []byte, next mux.ServerHandler) ([]byte, error) {
	ctx, span := t.start(t.extract(ctx, info), info, trace.SpanKindServer)
	resp, err := next(ctx, info, req)
	end(span, err, true)
	return resp, err
}

// ClientStream traces a stream opened: a client span from the open to the
// stream's end.
func (t *Tracing) ClientStream(ctx context.Context, info mux.CallInfo, payload []byte, next mux.StreamOpener) (*mux.Stream, error) {
	ctx, span := t.start(ctx, info, trace.SpanKindClient)
	returned := false
	defer func() {
		if !returned {
			endPanic(span)
		}
	}()
	st, err := next(t.inject(ctx), info, payload)
	returned = true
	if err != nil {
		end(span, err, false)
		return st, err
	}
	st.OnEnd(func(err error) { end(span, err, false) })
	return st, nil
}

// ServerStream traces a stream served: a server span over the handler's
// run, in the handler's context.
func (t *Tracing) ServerStream(ctx context.Context, info mux.CallInfo, payload []byte, next mux.StreamRunner) error {
	ctx, span := t.start(t.extract(ctx, info), info, trace.SpanKindServer)
	err := next(ctx, info, payload)
	end(span, err, true)
	return err
}

func (t *Tracing) start(ctx context.Context, info mux.CallInfo, kind trace.SpanKind) (context.Context, trace.Span) {
	k := spanKey{info.Handler, info.Peer, info.Stream, kind}
	var s *spanSetup
	if v, ok := t.spans.Load(k); ok {
		s = v.(*spanSetup)
	} else {
		s = t.keep(k, setup(info, kind))
	}
	return t.tracer.Start(ctx, s.name, s.opts...)
}

// keep stores s for k unless maxSetups are kept, and returns the setup
// to use (another goroutine's, if it stored one first).
func (t *Tracing) keep(k spanKey, s *spanSetup) *spanSetup {
	if t.nspans.Add(1) > maxSetups {
		t.nspans.Add(-1)
		return s
	}
	v, loaded := t.spans.LoadOrStore(k, s)
	if loaded {
		t.nspans.Add(-1)
	}
	return v.(*spanSetup)
}

// setup makes the name and start options of a call's spans.
func setup(info mux.CallInfo, kind trace.SpanKind) *spanSetup {
	name := info.Handler.Name()
	attrs := make([]attribute.KeyValue, 0, 10)
	attrs = append(attrs,
		semconv.RPCSystemKey.String("gridmesh"),
		semconv.RPCMethodKey.String(name),
		HandlerIDKey.Int(int(info.Handler)),
		PeerKey.String(info.Peer),
	)
	if info.Stream {
		attrs = append(attrs, StreamKey.Bool(true))
	}
	p := parsePeer(info.Peer)
	if p.host != "" {
		if kind == trace.SpanKindClient {
			attrs = append(attrs, semconv.ServerAddressKey.String(p.host))
			if p.port != 0 {
				attrs = append(attrs, semconv.ServerPortKey.Int(p.port))
			}
		}
		attrs = append(attrs, semconv.NetworkPeerAddressKey.String(p.host))
		if p.port != 0 {
			attrs = append(attrs, semconv.NetworkPeerPortKey.Int(p.port))
		}
	}
	return &spanSetup{name: "gridmesh/" + name, opts: []trace.SpanStartOption{trace.WithSpanKind(kind), trace.WithAttributes(attrs...)}}
}

// endPanic ends the span of a call that an interceptor inside it
// panicked out of (on the calling side, where mux does not recover it).
func endPanic(span trace.Span) {
	span.SetStatus(codes.Error, "panic")
	span.SetAttributes(semconv.ErrorTypeKey.String("panic"))
	span.End()
}

// end ends span with the call's outcome.
func end(span trace.Span, err error, server bool) {
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		span.SetAttributes(semconv.ErrorTypeKey.String(mux.ErrorKind(err, server)))
	}
	span.End()
}

// inject puts ctx's span context in the context a call carries.
func (t *Tracing) inject(ctx context.Context) context.Context {
	var c carrier
	t.prop.Inject(ctx, &c)
	if c.parent == "" {
		return ctx
	}
	return mux.WithTraceContext(ctx, c.parent, c.state)
}

// extract returns ctx with the caller's span context as its remote parent.
func (t *Tracing) extract(ctx context.Context, info mux.CallInfo) context.Context {
	if info.TraceParent == "" {
		return ctx
	}
	return t.prop.Extract(ctx, &carrier{parent: info.TraceParent, state: info.TraceState})
}

// carrier holds the two fields the wire carries.
type carrier struct{ parent, state string }

func (c *carrier) Get(key string) string {
	switch key {
	case "traceparent":
		return c.parent
	case "tracestate":
		return c.state
	}
	return ""
}

func (c *carrier) Set(key, value string) {
	switch key {
	case "traceparent":
		c.parent = value
	case "tracestate":
		c.state = value
	}
}

func (c *carrier) Keys() []string { return []string{"traceparent", "tracestate"} }

// peerAttrs is a peer's host and port.
type peerAttrs struct {
	host string
	port int
}

// parsePeer takes host and port from a grid host URL ("http://h:1234"),
// or a bare "host:port"; the port is 0 if none is given.
func parsePeer(p string) peerAttrs {
	hostport := p
	if u, err := url.Parse(p); err == nil && u.Host != "" {
		hostport = u.Host
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return peerAttrs{host: hostport}
	}
	n, _ := strconv.Atoi(port)
	return peerAttrs{host: host, port: n}
}
