package primesim

import (
	"crypto/subtle"
	"errors"
	"io"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/gridmesh/gridmesh/proto"
)

// Metadata keys Prime reads from every stream.
const (
	MetadataAPIKey          = "x-api-key"
	MetadataSmartContractID = "x-smart-contract-id"
	MetadataChainID         = "x-chain-id"
)

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
	if chain != s.cfg.ChainID {
		return status.Errorf(codes.InvalidArgument, "chain ID mismatch: the stream's x-chain-id is %q, this chain is %q", chain, s.cfg.ChainID)
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
		if s.state != nil {
			s.state.markDirty(st)
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
