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

	"github.com/gridmesh/gridmesh/internal/defaults"
	pb "github.com/gridmesh/gridmesh/proto"
)

// Defaults of Config's fields.
const (
	// DefaultChainID is the chain the demo's gateway names (x-chain-id) and
	// `gridmesh primesim` serves unless told otherwise.
	DefaultChainID = "demo-chain"
	// DefaultMaxBacklog bounds the unanswered transactions per contract.
	DefaultMaxBacklog = 1_000_000
	// DefaultCommitInterval is how often the state file is written.
	DefaultCommitInterval = 10 * time.Millisecond
	// DefaultRetention is how long an answered transaction stays in the
	// state file.
	DefaultRetention = 10 * time.Minute
	// DefaultSettle is how long WaitReport waits after the last first
	// answer for late duplicates.
	DefaultSettle = 200 * time.Millisecond
)

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
	// ErrNoState is returned by WaitDurable when there is no state file.
	ErrNoState = errors.New("primesim: no state file")
)

// Config configures a Server.
type Config struct {
	// APIKey is the value every stream must send as x-api-key. Required.
	APIKey string
	// Contracts lists the smart-contract IDs the server knows. Required.
	Contracts []string
	// ChainID is the only x-chain-id accepted, as a real Prime serves one
	// chain: a stream naming another chain is refused with
	// InvalidArgument "chain ID mismatch", one without any x-chain-id with
	// "missing chain ID". Default DefaultChainID, the demo's.
	ChainID string
	// MethodPath is the full gRPC method path served, "/<service>/<method>".
	// Default: smartcontractpb.DefaultRunMethod.
	MethodPath string
	// Logger receives the server's logs. Default: discard.
	Logger *slog.Logger
	// MaxBacklog bounds the unanswered transactions per contract.
	// Default: DefaultMaxBacklog.
	MaxBacklog int
	// Settle is how long WaitReport waits after the last first answer,
	// so that late duplicate answers are in the report.
	// Default: DefaultSettle.
	Settle time.Duration

	// StatePath, if set, names a bbolt file that keeps the books across a
	// crash of the process (see "State file" in the package doc): the
	// transactions, their delivery and answer counts and the first
	// answers. A Server started on the file of a dead one delivers again
	// what is unanswered there, oldest first. Empty: everything is in
	// memory (the default, and the fastest).
	StatePath string
	// CommitInterval is how often, with StatePath, the changes are written
	// to the file, all in one transaction (one fsync). A new transaction
	// is delivered only once written, so it adds up to this much latency.
	// Default: DefaultCommitInterval.
	CommitInterval time.Duration
	// LossWindow, with StatePath, holds an answer back from the file until
	// it is LossWindow old, so that a crash (kill -9) loses every answer
	// of its last LossWindow, and some up to LossWindow+CommitInterval
	// old, as a server with that commit interval would. The restarted
	// Server treats them as never received: it delivers them again.
	// Close writes every answer. Default 0: an answer is written at the
	// next commit.
	LossWindow time.Duration
	// Retention is how long, with StatePath, an answered transaction
	// stays, counted from its first answer; then it is deleted from the
	// file and from memory (Answer and the report's latencies no longer
	// see it; its counts stay), which bounds the file. Default:
	// DefaultRetention.
	Retention time.Duration
}

// Server is the simulated Prime endpoint. Create it with New.
type Server struct {
	cfg             Config
	log             *slog.Logger
	service, method string

	grpc *grpc.Server // replaced by Pause; guarded by mu after New

	closeOnce sync.Once
	wg        sync.WaitGroup // recv goroutines and Start's Serve goroutine
	state     *state         // nil without Config.StatePath

	mu        sync.Mutex
	closing   bool
	addr      net.Addr
	contracts map[string]*contract
	nextSess  uint64
	nextSeq   int           // the next transaction's seq
	answerCh  chan struct{} // closed and replaced whenever a first answer arrives
	lastFirst time.Time     // when the last first answer arrived
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
	// With a state file: transactions read from it at start, how many of
	// them were unanswered, and the distinct answered transactions whose
	// first answer is written.
	recovered           int
	recoveredUnanswered int
	durableAnswered     int
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
	if cfg.ChainID == "" {
		cfg.ChainID = DefaultChainID
	}
	service, method, err := splitMethodPath(cfg.MethodPath)
	if err != nil {
		return nil, err
	}
	if cfg.MaxBacklog < 0 || cfg.Settle < 0 || cfg.CommitInterval < 0 || cfg.LossWindow < 0 || cfg.Retention < 0 {
		return nil, errors.New("primesim: Config.MaxBacklog, Settle, CommitInterval, LossWindow and Retention must not be negative")
	}
	if cfg.LossWindow > 0 && cfg.StatePath == "" {
		return nil, errors.New("primesim: Config.LossWindow needs Config.StatePath: without a state file a crash loses everything")
	}
	defaults.Set(&cfg.MaxBacklog, DefaultMaxBacklog)
	defaults.Set(&cfg.Settle, DefaultSettle)
	defaults.Set(&cfg.CommitInterval, DefaultCommitInterval)
	defaults.Set(&cfg.Retention, DefaultRetention)
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
	if cfg.StatePath != "" {
		if err := s.openState(); err != nil {
			return nil, err
		}
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
