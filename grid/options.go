package grid

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/gridmesh/gridmesh/grid/gridmetrics"
	"github.com/gridmesh/gridmesh/grid/gridotel"
	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/internal/defaults"
	"github.com/gridmesh/gridmesh/mux"
)

// DefaultRoutePath is the URL path the grid dials when Options.RoutePath is
// empty. Mount Manager.Handler there.
const DefaultRoutePath = "/gridmesh/grid/v1"

// Options configure a Manager. Local and Hosts are required, and so is a
// way to authenticate (Secret, Authenticator, or Insecure). Every other
// field has a working zero value, given beside it. NewManager copies the
// Options and checks them once; later changes to the caller's copy have no
// effect.
type Options struct {
	// Local is this node's name: one of Hosts, spelt exactly the same.
	Local string
	// Hosts names the nodes of the grid this node connects to, this one
	// included, as URLs: http:// or ws:// (plain), https:// or wss://
	// (TLS), with host and port and optionally a path prefix. Two nodes
	// connect when each lists the other (names compared as strings), so
	// lists may differ while membership changes; Manager.SetHosts changes
	// it later.
	Hosts []string
	// RemoveGrace bounds how long a peer that Manager.SetHosts removed
	// keeps its session for the calls and streams in flight to finish.
	// Default 10s.
	RemoveGrace time.Duration
	// RoutePath is appended to a peer's URL path to form the WebSocket URL
	// this node dials. Default DefaultRoutePath.
	RoutePath string

	// Secret is the shared secret of the default authenticator (HMAC-SHA256
	// over the handshake, see Authenticator). Used when Authenticator is nil.
	Secret []byte
	// Authenticator signs and verifies handshakes. Default: HMAC-SHA256 with
	// Secret.
	Authenticator Authenticator
	// Insecure runs the grid without authentication when neither Secret nor
	// Authenticator is set; handshakes are still checked for host names,
	// dial side, clock skew and replay. Meant for tests. Default false:
	// NewManager refuses to run without authentication.
	Insecure bool
	// TLSConfig is used to dial https:// and wss:// peers (put client
	// certificates in it if the peers ask for them). Default: the system
	// roots, no client certificate. The serving side's TLS is configured on
	// the http.Server that serves Handler; StartNode serves with this same
	// config when Local is https:// or wss://.
	TLSConfig *tls.Config
	// NetDial opens the TCP connections this node dials. Default: a
	// net.Dialer. Each dial is bounded by HandshakeTimeout, as is the TLS
	// handshake after it.
	NetDial func(ctx context.Context, network, addr string) (net.Conn, error)
	// UnsentLimit caps the bytes written to a connection's socket that the
	// kernel has not sent yet (TCP_NOTSENT_LOWAT, Linux only), on dialed and
	// accepted connections alike, so that a small request is not queued
	// behind megabytes of a large message in the socket buffer. Default
	// DefaultUnsentLimit (128 KiB); negative leaves the kernel's default.
	UnsentLimit int
	// HandshakeTimeout bounds dialing a peer up to the end of the WebSocket
	// upgrade. On the accepting side a Node's HTTP server gives each
	// connection as long to send a request (header and body), as long again
	// to be answered, and as long to stay idle between requests; a grid
	// session, once upgraded, is exempt. Default 10 s.
	HandshakeTimeout time.Duration
	// MaxPendingConns bounds the connections a Node holds that are not grid
	// sessions: those in the handshake or in another request (stats,
	// metrics), and idle ones between requests. When a connection arrives
	// with the bound reached, the Node closes one of them to make room: the
	// oldest that shows no request, none being answered and (on Linux)
	// none waiting unread in its socket. A peer sends its handshake as soon
	// as it connects, so connections that strangers hold open without a
	// request go first and cannot keep it out. Manager.Handler, wherever it
	// is served, also checks at most MaxPendingConns handshakes at once and
	// answers the others 503 without checking them. Default
	// DefaultMaxPendingConns, or a quarter of the process's open-file limit
	// (RLIMIT_NOFILE) if that is lower, so that strangers cannot use up the
	// files a node needs for its peers.
	MaxPendingConns int
	// ClockSkew is how far a handshake's timestamp may be from this node's
	// clock. It is also how long a nonce is remembered against replay.
	// Default 1 minute.
	ClockSkew time.Duration
	// ReplayCacheSize bounds the nonces remembered against replay. When it
	// is full of unexpired nonces, new handshakes are refused until some
	// expire. Default 65536.
	ReplayCacheSize int

	// BackoffBase and BackoffMax shape the delay between dial attempts:
	// min(BackoffMax, BackoffBase·2^n) + jitter in [0, BackoffBase), n
	// counting failures. Defaults 100 ms and 5 s.
	BackoffBase, BackoffMax time.Duration
	// HealthyAfter is how long a connection must last for n to start over
	// from 0. Default 60 s.
	HealthyAfter time.Duration

	// PingInterval is the time between liveness pings on each connection,
	// and PingTimeout how long a ping may wait for its pong before the
	// connection is declared dead and closed, unless the peer showed life
	// meanwhile (see the package doc): then until it has shown none for
	// PingTimeout. A silent or stopped peer is detected within
	// PingInterval + PingTimeout, whatever we keep sending it. Defaults
	// 10 s and 3 s.
	PingInterval, PingTimeout time.Duration

	// Registry holds the handlers this node serves to its peers; the
	// Manager serves from it (Manager.Registry returns it). Register the
	// handlers in it before NewManager, which dials peers at once and
	// whose Handler may accept them at once: a peer's first call then
	// finds its handler. It is shared, not copied. Default: a new, empty
	// registry, to register on through the Manager.
	Registry *handlers.Registry
	// Mux holds the limits of each connection's mux session (message size,
	// requests in flight, running handlers, open streams, the bytes a
	// peer may make it hold, queued bytes); Mux.MemoryBound() is the most
	// memory a peer can make a connection's session hold. Its Logger
	// defaults to Logger.
	Mux mux.Config
	// ClientInterceptors wrap every single request this node sends,
	// ServerInterceptors every single handler it runs for a peer,
	// ClientStreamInterceptors every stream it opens and
	// ServerStreamInterceptors every stream handler it runs, on every
	// connection; CallInfo.Peer is the peer's host. Each list runs in
	// order, the first outermost, inside the grid's own tracing and
	// metrics and outside the lists in Mux (which run last). Default none.
	ClientInterceptors       []mux.ClientInterceptor
	ServerInterceptors       []mux.ServerInterceptor
	ClientStreamInterceptors []mux.ClientStreamInterceptor
	ServerStreamInterceptors []mux.ServerStreamInterceptor
	// TracerProvider, if set, traces every call with OpenTelemetry: a
	// client span and a server span per call, the trace context carried
	// across the hop, the server span in the handler's context (see
	// package grid/gridotel). Its interceptors are the outermost. Default
	// nil: no tracing, at no cost.
	TracerProvider trace.TracerProvider
	// DisableMetrics turns off the per-handler and per-peer Prometheus
	// metrics (package grid/gridmetrics; Manager.Collector). Default
	// false: they are on. A request is counted by the sessions' observer
	// (mux.Config.Observer): one monotonic clock read on each side (two on
	// the calling side when client interceptors run, tracing's among
	// them), a share of the one each read from the connection takes, and
	// three atomic adds per side. A stream costs two clock reads per side and
	// each of its messages an atomic add. None of it allocates or starts
	// a goroutine (a stream's end on the calling side is counted inline by
	// the goroutine that ends it, with a pooled hook). TestMetricsAllocs
	// and TestStreamMetricsAllocs check that a request and a stream
	// allocate no more with the metrics than without.
	DisableMetrics bool

	// Logger receives one line per state change, handshake rejections (once
	// per distinct reason) and restarted peers. Default: discard.
	Logger *slog.Logger
	// OnStateChange, if set, is called for every state change of every
	// connection, in order for each connection. It runs on the grid's
	// goroutines: it must return quickly and must not call Manager.Close.
	OnStateChange func(host string, old, new State)
	// Now is the clock used for handshake timestamps and the replay cache.
	// Default time.Now. Tests use it to skew a node's clock.
	Now func() time.Time

	metrics *gridmetrics.Metrics // nil if DisableMetrics; set by withDefaults
	tracing *gridotel.Tracing    // nil without TracerProvider; set by withDefaults
}

// withDefaults returns a copy of o with defaults applied, the hosts sorted,
// or an error naming the first invalid field.
func (o Options) withDefaults() (Options, error) {
	if err := o.checkHosts(); err != nil {
		return o, err
	}
	o.Hosts = slices.Clone(o.Hosts)
	slices.Sort(o.Hosts)
	if err := o.checkDurations(); err != nil {
		return o, err
	}
	if o.ReplayCacheSize < 0 {
		return o, optionError("ReplayCacheSize", "negative (%d)", o.ReplayCacheSize)
	}
	if o.MaxPendingConns < 0 {
		return o, optionError("MaxPendingConns", "negative (%d)", o.MaxPendingConns)
	}
	if o.Authenticator == nil && len(o.Secret) > 0 {
		o.Authenticator = HMACAuthenticator(o.Secret)
	}
	if o.Authenticator == nil && !o.Insecure {
		return o, optionError("Secret", "no Secret or Authenticator given (set Insecure to run without authentication)")
	}
	if o.RoutePath == "" {
		o.RoutePath = DefaultRoutePath
	}
	if !strings.HasPrefix(o.RoutePath, "/") {
		return o, optionError("RoutePath", "%q does not start with /", o.RoutePath)
	}
	defaults.Set(&o.UnsentLimit, DefaultUnsentLimit)
	defaults.Set(&o.HandshakeTimeout, 10*time.Second)
	defaults.Set(&o.ClockSkew, time.Minute)
	defaults.Set(&o.ReplayCacheSize, 1<<16)
	defaults.Set(&o.MaxPendingConns, defaultMaxPendingConns(fileLimit()))
	defaults.Set(&o.BackoffBase, 100*time.Millisecond)
	defaults.Set(&o.BackoffMax, 5*time.Second)
	defaults.Set(&o.HealthyAfter, time.Minute)
	defaults.Set(&o.PingInterval, 10*time.Second)
	defaults.Set(&o.PingTimeout, 3*time.Second)
	defaults.Set(&o.RemoveGrace, 10*time.Second)
	if o.BackoffMax < o.BackoffBase {
		return o, optionError("BackoffMax", "%v is below BackoffBase %v", o.BackoffMax, o.BackoffBase)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Mux.BaseContext == nil {
		o.Mux.BaseContext = context.Background()
	}
	if o.Mux.Logger == nil {
		o.Mux.Logger = o.Logger
	}
	o.chainInterceptors()
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.NetDial == nil {
		o.NetDial = (&net.Dialer{}).DialContext
	}
	dial := o.NetDial
	hsTimeout := o.HandshakeTimeout
	o.NetDial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		// net/http dials apart from the request's context (a dial that
		// outlives its request may serve the next one), so a dial to a
		// host that drops SYNs would wait for the kernel's connect
		// timeout, minutes, and every retry would add one more.
		ctx, cancel := context.WithTimeout(ctx, hsTimeout)
		defer cancel()
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tuneConn(c, o.UnsentLimit)
		cc := &corkConn{Conn: c}
		if slot, ok := ctx.Value(corkSlot{}).(**corkConn); ok {
			*slot = cc
		}
		return cc, nil
	}
	return o, nil
}

func (o Options) checkHosts() error {
	if len(o.Hosts) == 0 {
		return optionError("Hosts", "empty")
	}
	seen := make(map[string]bool, len(o.Hosts))
	for _, h := range o.Hosts {
		if seen[h] {
			return optionError("Hosts", "%q listed twice", h)
		}
		seen[h] = true
		if _, err := parseHost(h); err != nil {
			return optionError("Hosts", "%v", err)
		}
	}
	if o.Local == "" {
		return optionError("Local", "empty")
	}
	if !seen[o.Local] {
		return optionError("Local", "%q is not one of Hosts", o.Local)
	}
	return nil
}

func (o Options) checkDurations() error {
	checks := []struct {
		name string
		v    time.Duration
	}{
		{"HandshakeTimeout", o.HandshakeTimeout}, {"ClockSkew", o.ClockSkew},
		{"BackoffBase", o.BackoffBase}, {"BackoffMax", o.BackoffMax},
		{"HealthyAfter", o.HealthyAfter}, {"PingInterval", o.PingInterval},
		{"PingTimeout", o.PingTimeout}, {"RemoveGrace", o.RemoveGrace},
	}
	for _, c := range checks {
		if c.v < 0 {
			return optionError(c.name, "negative (%v)", c.v)
		}
	}
	return nil
}

// parseHost checks a host URL and returns it.
func parseHost(h string) (*url.URL, error) {
	u, err := url.Parse(h)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "http", "https", "ws", "wss":
	default:
		return nil, &url.Error{Op: "parse", URL: h, Err: errScheme}
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return nil, &url.Error{Op: "parse", URL: h, Err: errHostURL}
	}
	return u, nil
}

var (
	errScheme  = simpleError("scheme must be http, https, ws or wss")
	errHostURL = simpleError("want scheme://host:port[/path], without user, query or fragment")
)

type simpleError string

func (e simpleError) Error() string { return string(e) }

// dialURL returns the WebSocket URL that reaches host's grid handler.
func dialURL(host, routePath string) string {
	u, _ := parseHost(host) // checked by withDefaults
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + routePath
	u.RawPath = ""
	return u.String()
}
