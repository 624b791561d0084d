package primesim

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	pb "github.com/gridmesh/gridmesh/proto"
)

// DefaultMaxBacklog is the per-contract bound on unanswered transactions used
// when Config.MaxBacklog is zero.
const DefaultMaxBacklog = 1_000_000

// Keepalive settings of the simulator. Clients may ping as often as every
// KeepaliveMinTime, with or without an active stream.
const (
	KeepaliveMinTime = 5 * time.Second
	keepaliveTime    = 30 * time.Second
	keepaliveTimeout = 10 * time.Second
	// handshakeTimeout bounds a new connection's HTTP/2 handshake, and
	// idleTimeout how long a connection may stay open without a stream:
	// a client that connects and sends nothing, or keeps a connection it
	// does not use, does not hold a socket for ever. A dead client is
	// found by the keepalive (and, on Linux, by the TCP_USER_TIMEOUT that
	// grpc-go sets to keepaliveTimeout, which bounds a stuck write).
	handshakeTimeout = 10 * time.Second
	idleTimeout      = 5 * time.Minute
	// gracefulStopTimeout bounds how long Close waits for streams to drain
	// before it closes connections forcibly.
	gracefulStopTimeout = 5 * time.Second
)

var (
	// ErrClosed is returned by Submit, Start and Generate after Close.
	ErrClosed = errors.New("primesim: server closed")
	// ErrBacklogFull is returned by Submit when the contract already has
	// Config.MaxBacklog unanswered transactions.
	ErrBacklogFull = errors.New("primesim: backlog full")
	// ErrUnknownContract is returned by Submit for a contract ID that is not
	// in Config.Contracts.
	ErrUnknownContract = errors.New("primesim: unknown smart contract")
	// ErrDuplicateID is returned by Submit when a transaction with the same ID
	// was already submitted for the contract.
	ErrDuplicateID = errors.New("primesim: duplicate transaction ID")
)

// Config configures a Server.
type Config struct {
	// APIKey is the value every stream must send as x-api-key. Required.
	APIKey string
	// Contracts lists the smart-contract IDs the server knows. Required.
	Contracts []string
	// ChainID, if set, is the only x-chain-id accepted. A stream without any
	// x-chain-id is always refused.
	ChainID string
	// MethodPath is the full gRPC method path served, "/<service>/<method>".
	// Default: smartcontractpb.DefaultRunMethod.
	MethodPath string
	// Logger receives the server's logs. Default: discard.
	Logger *slog.Logger
	// MaxBacklog bounds the unanswered transactions per contract.
	// Default: DefaultMaxBacklog.
	MaxBacklog int
}

// Server is the simulated Prime endpoint. Create it with New.
type Server struct {
	cfg             Config
	log             *slog.Logger
	service, method string

	grpc *grpc.Server // replaced by Pause; guarded by mu after New

	closeOnce sync.Once
	wg        sync.WaitGroup // recv goroutines and Start's Serve goroutine

	mu        sync.Mutex
	closing   bool
	addr      net.Addr
	contracts map[string]*contract
	nextSess  uint64
	answerCh  chan struct{} // closed and replaced whenever a first answer arrives
	stats     counters
}

// counters are the server-wide totals; per-transaction data lives in txState.
type counters struct {
	submitted            int
	delivered            int
	redelivered          int
	answered             int
	answeredMoreThanOnce int
	duplicateAnswers     int
	unexpected           int
	errorResponses       int
	streamsAccepted      int
	streamsRejected      int
	streamsReplaced      int
}

// New validates cfg and builds a Server. It does not listen; call Serve or
// Start.
func New(cfg Config) (*Server, error) {
	if cfg.APIKey == "" {
		return nil, errors.New("primesim: Config.APIKey is required")
	}
	if len(cfg.Contracts) == 0 {
		return nil, errors.New("primesim: Config.Contracts needs at least one smart-contract ID")
	}
	if cfg.MethodPath == "" {
		cfg.MethodPath = pb.DefaultRunMethod
	}
	service, method, err := splitMethodPath(cfg.MethodPath)
	if err != nil {
		return nil, err
	}
	if cfg.MaxBacklog < 0 {
		return nil, errors.New("primesim: Config.MaxBacklog must not be negative")
	}
	if cfg.MaxBacklog == 0 {
		cfg.MaxBacklog = DefaultMaxBacklog
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Contracts = append([]string(nil), cfg.Contracts...)

	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		contracts: make(map[string]*contract, len(cfg.Contracts)),
		answerCh:  make(chan struct{}),
	}
	for _, id := range cfg.Contracts {
		if id == "" {
			return nil, errors.New("primesim: Config.Contracts contains an empty ID")
		}
		if _, dup := s.contracts[id]; dup {
			return nil, fmt.Errorf("primesim: Config.Contracts lists %q twice", id)
		}
		s.contracts[id] = &contract{id: id, txs: make(map[string]*txState)}
	}

	s.service, s.method = service, method
	s.grpc = s.newGRPC()
	return s, nil
}

// newGRPC builds the gRPC server that serves the Run stream.
func (s *Server) newGRPC() *grpc.Server {
	g := grpc.NewServer(
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             KeepaliveMinTime,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: idleTimeout,
			Time:              keepaliveTime,
			Timeout:           keepaliveTimeout,
		}),
		grpc.ConnectionTimeout(handshakeTimeout),
	)
	// A hand-built descriptor instead of the generated one, so that the
	// service and method names come from cfg.MethodPath.
	g.RegisterService(&grpc.ServiceDesc{
		ServiceName: s.service,
		HandlerType: (*any)(nil),
		Streams: []grpc.StreamDesc{{
			StreamName:    s.method,
			Handler:       s.handleStream,
			ServerStreams: true,
			ClientStreams: true,
		}},
		Metadata: "smartcontract.proto",
	}, s)
	return g
}

func splitMethodPath(p string) (service, method string, err error) {
	rest, ok := strings.CutPrefix(p, "/")
	if ok {
		service, method, ok = strings.Cut(rest, "/")
	}
	if !ok || service == "" || method == "" || strings.Contains(method, "/") {
		return "", "", fmt.Errorf("primesim: Config.MethodPath %q is not of the form /<service>/<method>", p)
	}
	return service, method, nil
}

// MethodPath returns the full gRPC method path being served.
func (s *Server) MethodPath() string { return s.cfg.MethodPath }
