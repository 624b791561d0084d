package primesim

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/gridmesh/gridmesh/proto"
)

// DefaultMaxBacklog is the per-contract bound on unanswered transactions used
// when Config.MaxBacklog is zero.
const DefaultMaxBacklog = 1_000_000

// Metadata keys Prime reads from every stream.
const (
	MetadataAPIKey          = "x-api-key"
	MetadataSmartContractID = "x-smart-contract-id"
	MetadataChainID         = "x-chain-id"
)

// Keepalive settings of the simulator. Clients may ping as often as every
// KeepaliveMinTime, with or without an active stream.
const (
	KeepaliveMinTime = 5 * time.Second
	keepaliveTime    = 30 * time.Second
	keepaliveTimeout = 10 * time.Second
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

// Transaction is one invocation to deliver to a smart contract.
type Transaction struct {
	// ID is the transaction_id. Submit generates one when empty.
	ID string
	// JSON is the transaction_json sent to the contract.
	JSON string
	// EnvVars and Secrets are sent as env_vars and secrets.
	EnvVars map[string]string
	Secrets map[string]string
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

type contract struct {
	id      string
	txs     map[string]*txState
	order   []*txState // submission order; answered entries are pruned lazily
	pending int        // unanswered transactions
	session *session   // live stream, nil if none
}

type txState struct {
	id          string
	seq         int // submission order across the server, for reporting
	req         *pb.SmartContractRequest
	submitted   time.Time
	delivered   int
	answered    int
	firstAnswer time.Time
	response    *pb.SmartContractResponse // first response
}

// session is one accepted stream.
type session struct {
	id       uint64
	contract *contract
	queue    []*txState // to send on this stream, oldest first; guarded by Server.mu
	wake     chan struct{}
	done     chan struct{}
	endOnce  sync.Once
	err      error // status returned to the client; written before done is closed
}

func (ss *session) end(err error) {
	ss.endOnce.Do(func() {
		ss.err = err
		close(ss.done)
	})
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
			Time:    keepaliveTime,
			Timeout: keepaliveTimeout,
		}),
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

// Serve accepts connections on lis until Close. It returns nil after Close.
func (s *Server) Serve(lis net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		_ = lis.Close()
		return ErrClosed
	}
	s.addr = lis.Addr()
	g := s.grpc
	s.mu.Unlock()
	return g.Serve(lis)
}

// Start listens on the TCP address addr (e.g. "127.0.0.1:0") and serves in
// the background until Close. Addr reports the bound address once Start
// returns.
func (s *Server) Start(addr string) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("primesim: listen %s: %w", addr, err)
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		_ = lis.Close()
		return ErrClosed
	}
	s.addr = lis.Addr()
	g := s.grpc
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		if err := g.Serve(lis); err != nil {
			s.log.Error("primesim: serve failed", "err", err)
		}
	}()
	return nil
}

// Addr returns the listening address, or nil before Serve or Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Close ends every stream with status Unavailable, stops the gRPC server
// (gracefully, forcibly after a few seconds) and waits for all goroutines the
// server started. The books stay readable through Report. Close is
// idempotent and always returns nil.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		live := s.liveLocked()
		g := s.grpc
		s.mu.Unlock()
		for _, ss := range live {
			ss.end(status.Error(codes.Unavailable, "primesim shutting down"))
		}
		stopGRPC(g)
		s.wg.Wait()
	})
	return nil
}

// Pause stops serving as a restarting Prime would: every stream ends with
// status Unavailable, the listener and connections close, and the books
// and backlogs stay. Transactions submitted while paused wait in the
// backlog; Start (on the same address or another) serves again, and a
// client that attaches then gets every unanswered transaction, oldest
// first. Pause after Close does nothing.
func (s *Server) Pause() {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	live := s.liveLocked()
	old := s.grpc
	s.grpc = s.newGRPC()
	s.mu.Unlock()
	for _, ss := range live {
		ss.end(status.Error(codes.Unavailable, "primesim restarting"))
	}
	stopGRPC(old)
}

// liveLocked returns the live sessions; s.mu is held.
func (s *Server) liveLocked() []*session {
	var live []*session
	for _, c := range s.contracts {
		if c.session != nil {
			live = append(live, c.session)
		}
	}
	return live
}

// stopGRPC stops g gracefully, forcibly after gracefulStopTimeout.
func stopGRPC(g *grpc.Server) {
	stopped := make(chan struct{})
	go func() {
		g.GracefulStop()
		close(stopped)
	}()
	t := time.NewTimer(gracefulStopTimeout)
	defer t.Stop()
	select {
	case <-stopped:
	case <-t.C:
		g.Stop()
		<-stopped
	}
}

// Stop is an alias for Close.
func (s *Server) Stop() { _ = s.Close() }

// Submit queues tx for contractID and returns its transaction ID (generated
// if tx.ID is empty). It is delivered at once if a stream is live for the
// contract, otherwise when one attaches.
func (s *Server) Submit(contractID string, tx Transaction) (string, error) {
	if tx.ID == "" {
		tx.ID = newUUID()
	}
	req := &pb.SmartContractRequest{
		TransactionId:   tx.ID,
		TransactionJson: tx.JSON,
		EnvVars:         copyMap(tx.EnvVars),
		Secrets:         copyMap(tx.Secrets),
	}
	now := time.Now()

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return "", ErrClosed
	}
	c := s.contracts[contractID]
	if c == nil {
		return "", fmt.Errorf("%w: %q", ErrUnknownContract, contractID)
	}
	if _, dup := c.txs[tx.ID]; dup {
		return "", fmt.Errorf("%w: %q", ErrDuplicateID, tx.ID)
	}
	if c.pending >= s.cfg.MaxBacklog {
		return "", fmt.Errorf("%w: contract %q has %d unanswered transactions", ErrBacklogFull, contractID, c.pending)
	}
	st := &txState{id: tx.ID, seq: s.stats.submitted, req: req, submitted: now}
	s.stats.submitted++
	c.txs[tx.ID] = st
	c.order = append(c.order, st)
	c.pending++
	if len(c.order) > 1024 && len(c.order) > 2*c.pending {
		c.pruneOrder()
	}
	if ss := c.session; ss != nil {
		ss.queue = append(ss.queue, st)
		select {
		case ss.wake <- struct{}{}:
		default:
		}
	} else {
		s.log.Debug("no active gRPC connection", "smart_contract_id", contractID, "transaction_id", tx.ID)
	}
	return tx.ID, nil
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// pruneOrder drops answered transactions from c.order. Caller holds s.mu.
func (c *contract) pruneOrder() {
	kept := c.order[:0]
	for _, st := range c.order {
		if st.answered == 0 {
			kept = append(kept, st)
		}
	}
	clear(c.order[len(kept):])
	c.order = kept
}

// Answer returns the first response received for a transaction.
func (s *Server) Answer(contractID, txID string) (*pb.SmartContractResponse, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.contracts[contractID]
	if c == nil {
		return nil, false
	}
	st := c.txs[txID]
	if st == nil || st.response == nil {
		return nil, false
	}
	return st.response, true
}

// WaitAnswered blocks until at least n distinct transactions (over all
// contracts) have been answered, or ctx ends.
func (s *Server) WaitAnswered(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		got, ch := s.stats.answered, s.answerCh
		s.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("primesim: %d of %d transactions answered: %w", got, n, context.Cause(ctx))
		}
	}
}

func firstValue(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// handleStream serves one Run stream. The handler goroutine sends; a second
// goroutine receives responses.
func (s *Server) handleStream(_ any, stream grpc.ServerStream) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	cid := firstValue(md, MetadataSmartContractID)
	if err := s.checkMetadata(md, cid); err != nil {
		s.mu.Lock()
		s.stats.streamsRejected++
		s.mu.Unlock()
		s.log.Info("stream rejected", "smart_contract_id", cid, "err", err)
		return err
	}

	ss, err := s.attach(cid)
	if err != nil {
		return err
	}
	s.log.Info("stream attached", "smart_contract_id", cid, "stream", ss.id)

	go func() {
		defer s.wg.Done() // added by attach
		ss.end(s.recvLoop(ss, stream))
	}()
	s.sendLoop(ss, stream)
	<-ss.done
	s.detach(ss)
	s.log.Info("stream ended", "smart_contract_id", cid, "stream", ss.id, "err", ss.err)
	return ss.err
}

func (s *Server) checkMetadata(md metadata.MD, cid string) error {
	chain := firstValue(md, MetadataChainID)
	if chain == "" {
		return status.Error(codes.InvalidArgument, "missing chain ID")
	}
	if s.cfg.ChainID != "" && chain != s.cfg.ChainID {
		return status.Errorf(codes.InvalidArgument, "unknown chain ID %q", chain)
	}
	key := firstValue(md, MetadataAPIKey)
	if subtle.ConstantTimeCompare([]byte(key), []byte(s.cfg.APIKey)) != 1 {
		return status.Error(codes.Unauthenticated, "invalid API key")
	}
	if _, ok := s.contracts[cid]; !ok { // the map is never modified after New
		return status.Errorf(codes.PermissionDenied, "unknown smart contract ID %q", cid)
	}
	return nil
}

// attach makes a new session the live one for contract cid, replacing any
// older one, and queues every unanswered transaction on it, oldest first.
func (s *Server) attach(cid string) (*session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil, status.Error(codes.Unavailable, "primesim shutting down")
	}
	c := s.contracts[cid]
	s.nextSess++
	ss := &session{
		id:       s.nextSess,
		contract: c,
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	if old := c.session; old != nil {
		old.end(status.Error(codes.Aborted, "replaced by a newer stream"))
		s.stats.streamsReplaced++
		s.log.Info("stream replaced", "smart_contract_id", cid, "old_stream", old.id, "new_stream", ss.id)
	}
	c.pruneOrder()
	ss.queue = append(make([]*txState, 0, len(c.order)), c.order...)
	c.session = ss
	s.stats.streamsAccepted++
	s.wg.Add(1) // for the receive goroutine; Close waits after setting closing
	return ss, nil
}

func (s *Server) detach(ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss.contract.session == ss {
		ss.contract.session = nil
	}
	ss.queue = nil
}

// next pops the next unanswered transaction of the session's queue.
func (s *Server) next(ss *session) (*txState, *pb.SmartContractRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(ss.queue) > 0 {
		st := ss.queue[0]
		ss.queue[0] = nil
		ss.queue = ss.queue[1:]
		if st.answered == 0 {
			return st, st.req
		}
	}
	ss.queue = nil // let the backing array go
	return nil, nil
}

func (s *Server) sendLoop(ss *session, stream grpc.ServerStream) {
	for {
		st, req := s.next(ss)
		if st == nil {
			select {
			case <-ss.wake:
				continue
			case <-ss.done:
				return
			}
		}
		select {
		case <-ss.done:
			return
		default:
		}
		if err := stream.SendMsg(req); err != nil {
			ss.end(err)
			return
		}
		s.mu.Lock()
		st.delivered++
		s.stats.delivered++
		if st.delivered > 1 {
			s.stats.redelivered++
		}
		s.mu.Unlock()
	}
}

// recvLoop reads responses until the stream fails or the client half-closes.
// Its result becomes the stream's status.
func (s *Server) recvLoop(ss *session, stream grpc.ServerStream) error {
	for {
		resp := new(pb.SmartContractResponse)
		if err := stream.RecvMsg(resp); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		s.record(ss.contract, resp)
	}
}

func (s *Server) record(c *contract, resp *pb.SmartContractResponse) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := c.txs[resp.GetTransactionId()]
	if st == nil {
		s.stats.unexpected++
		s.log.Warn("response for unknown transaction", "smart_contract_id", c.id, "transaction_id", resp.GetTransactionId())
		return
	}
	st.answered++
	if st.answered > 1 {
		if st.answered == 2 {
			s.stats.answeredMoreThanOnce++
		}
		s.stats.duplicateAnswers++
		s.log.Warn("transaction answered more than once", "smart_contract_id", c.id, "transaction_id", st.id, "answers", st.answered)
		return
	}
	st.firstAnswer = now
	st.response = resp
	st.req = nil // the request is never sent again
	c.pending--
	s.stats.answered++
	if resp.GetError() != "" {
		s.stats.errorResponses++
	}
	close(s.answerCh)
	s.answerCh = make(chan struct{})
}
