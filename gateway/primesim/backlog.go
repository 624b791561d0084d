package primesim

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	pb "github.com/gridmesh/gridmesh/proto"
)

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

type contract struct {
	id        string
	txs       map[string]*txState
	order     []*txState // deliverable, in submission order; answered entries are pruned lazily
	pending   int        // unanswered transactions
	submitted int        // transactions submitted ever (with a state file: over its life)
	session   *session   // live stream, nil if none
}

type txState struct {
	id          string
	contract    *contract
	seq         int // submission order across the server: the state file's key
	req         *pb.SmartContractRequest
	submitted   time.Time
	delivered   int
	answered    int
	firstAnswer time.Time
	response    *pb.SmartContractResponse // first response

	// With a state file: what of the above is written (durable: the
	// submission), and whether the transaction waits in state.dirty.
	durable      bool
	durDelivered int
	durAnswered  int
	dirty        bool
}

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
	st := &txState{id: tx.ID, contract: c, seq: s.nextSeq, req: req, submitted: now}
	s.nextSeq++
	s.stats.submitted++
	c.submitted++
	c.txs[tx.ID] = st
	c.pending++
	if s.state != nil {
		s.state.markDirty(st) // deliverable once written (release)
		return tx.ID, nil
	}
	c.deliver(st, s.log)
	return tx.ID, nil
}

// deliver appends st, a new transaction, to c's deliverable ones and to
// the live stream's queue. Caller holds s.mu.
func (c *contract) deliver(st *txState, log *slog.Logger) {
	c.order = append(c.order, st)
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
		log.Debug("no active gRPC connection", "smart_contract_id", c.id, "transaction_id", st.id)
	}
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
	if s.state != nil {
		s.state.answerArrived(st, now)
	}
	if st.answered > 1 {
		if st.answered == 2 {
			s.stats.answeredMoreThanOnce++
		}
		s.stats.duplicateAnswers++
		s.log.Warn("transaction answered more than once", "smart_contract_id", c.id, "transaction_id", st.id, "answers", st.answered)
		return
	}
	st.firstAnswer = now
	s.lastFirst = now
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
