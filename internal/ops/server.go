package ops

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Paths the operations port serves.
const (
	MetricsPath = "/metrics"
	HealthPath  = "/healthz"
	ReadyPath   = "/readyz"
	StatsPath   = "/stats"
	PprofPath   = "/debug/pprof/"
	// PagePath serves the status page (with Options.Mesh): the page alone
	// is served without the token, since it holds no data; see the
	// package doc.
	PagePath = "/"
	// MeshPath serves Options.Mesh as JSON, which the page polls.
	MeshPath = "/mesh"
)

// Options configure a Server. Listen is required; every other field has
// a working zero value.
type Options struct {
	// Listen is the TCP address to serve on, host:port.
	Listen string
	// Token, when set, must be sent as "Authorization: Bearer TOKEN" on
	// every request but the probes; others get 401.
	Token string
	// Pprof serves net/http/pprof at PprofPath.
	Pprof bool
	// Health reports whether the process's loops are alive: nil, or why
	// not. /healthz answers 200 or 503 with the reason. Default: alive.
	Health func() error
	// Ready reports whether the node should get traffic: nil, or why not.
	// /readyz answers 200 or 503 with the reason. Default: ready.
	Ready func() error
	// Stats returns what /stats serves as JSON. Default: no /stats.
	Stats func() any
	// Mesh returns what MeshPath serves as JSON, the whole mesh as this
	// node gathers it (grid.Manager.MeshStats). It is called at most once
	// at a time, and its JSON answers every request that arrives while it
	// runs and for MeshReuse after, so that many pages polling the port
	// cost one gathering; its ctx is not the request's (whose end does not
	// cut it short for the others) and ends after 30 s. With it, PagePath
	// serves the status page. Default: neither.
	Mesh func(ctx context.Context) any
	// MeshReuse is how long after a gathering ends its JSON still answers
	// the requests for MeshPath. Default DefaultMeshReuse (500 ms).
	MeshReuse time.Duration
	// Gatherer is what /metrics serves. Default: no /metrics.
	Gatherer prometheus.Gatherer
	// Logger receives the HTTP server's errors. Default: discard.
	Logger *slog.Logger
	// TLSConfig, when set, serves HTTPS with it. Default: plain HTTP.
	TLSConfig *tls.Config
}

// Server serves the operations port.
type Server struct {
	ln     net.Listener
	srv    *http.Server
	served chan struct{}
}

// Listen starts serving opts on opts.Listen.
func Listen(opts Options) (*Server, error) {
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("ops: listen %s: %w", opts.Listen, err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.TLSConfig != nil {
		ln = tls.NewListener(ln, opts.TLSConfig)
	}
	s := &Server{
		ln: ln,
		srv: &http.Server{
			Handler:           Handler(opts),
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
		},
		served: make(chan struct{}),
	}
	go s.serve()
	return s, nil
}

func (s *Server) serve() {
	defer close(s.served)
	_ = s.srv.Serve(s.ln)
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the server, letting requests being answered finish for up
// to a second, and waits for it. It is idempotent.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = s.srv.Close()
	}
	<-s.served
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Handler returns the operations port's routes for opts (Listen and
// Logger aside).
func Handler(opts Options) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET "+HealthPath, probe(opts.Health, "ok"))
	mux.Handle("GET "+ReadyPath, probe(opts.Ready, "ready"))
	if opts.Gatherer != nil {
		mux.Handle("GET "+MetricsPath, promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{
			ErrorLog: slog.NewLogLogger(loggerOr(opts.Logger).Handler(), slog.LevelWarn),
		}))
	}
	if opts.Stats != nil {
		mux.Handle("GET "+StatsPath, statsHandler(opts.Stats))
	}
	if opts.Mesh != nil {
		mux.Handle("GET "+MeshPath, meshHandler(opts.Mesh, opts.MeshReuse))
		mux.Handle("GET "+PagePath+"{$}", pageHandler())
	}
	if opts.Pprof {
		mux.HandleFunc(PprofPath, pprof.Index)
		mux.HandleFunc(PprofPath+"cmdline", pprof.Cmdline)
		mux.HandleFunc(PprofPath+"profile", pprof.Profile)
		mux.HandleFunc(PprofPath+"symbol", pprof.Symbol)
		mux.HandleFunc(PprofPath+"trace", pprof.Trace)
	}
	if opts.Token == "" {
		return mux
	}
	return requireToken(opts.Token, opts.Mesh != nil, mux)
}

func loggerOr(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return l
}

// probe answers 200 and ok while check passes, else 503 and why.
func probe(check func() error, ok string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if check != nil {
			if err := check(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "not %s: %v\n", ok, err)
				return
			}
		}
		fmt.Fprintln(w, ok)
	})
}

func statsHandler(stats func() any) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(stats())
	})
}

// requireToken lets the probes and, if served, the status page (which
// holds no data) through and asks every other request for the bearer
// token.
func requireToken(token string, page bool, next http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != HealthPath && r.URL.Path != ReadyPath && (!page || r.URL.Path != PagePath) &&
			subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gridmesh"`)
			http.Error(w, "unauthorized: this port wants Authorization: Bearer <ops token>", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
