package primesim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// txHeader and txEnvelope mirror the JSON layout of a Dragonchain transaction
// as handed to a smart contract.
type txHeader struct {
	TxnType   string `json:"txn_type"`
	DcID      string `json:"dc_id"`
	TxnID     string `json:"txn_id"`
	BlockID   string `json:"block_id"`
	Timestamp string `json:"timestamp"`
	Tag       string `json:"tag"`
	Invoker   string `json:"invoker"`
}

type txEnvelope struct {
	Version string      `json:"version"`
	Header  txHeader    `json:"header"`
	Payload loadPayload `json:"payload"`
}

// loadPayload is what the load generator puts in each transaction's payload.
type loadPayload struct {
	Seq     int    `json:"seq"`
	Of      int    `json:"of"`
	Message string `json:"message"`
}

// newUUID returns a random RFC 4122 version 4 UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails on supported platforms
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}

// NewTransaction builds a Dragonchain-shaped transaction for contractID with
// a fresh ID. seq and count end up in the payload.
func (s *Server) NewTransaction(contractID string, seq, count int) (Transaction, error) {
	id := newUUID()
	dcID := s.cfg.ChainID
	if dcID == "" {
		dcID = "primesim"
	}
	body, err := json.Marshal(txEnvelope{
		Version: "1",
		Header: txHeader{
			TxnType:   contractID,
			DcID:      dcID,
			TxnID:     id,
			Timestamp: strconv.FormatInt(time.Now().Unix(), 10),
		},
		Payload: loadPayload{Seq: seq, Of: count, Message: "primesim load " + strconv.Itoa(seq)},
	})
	if err != nil {
		return Transaction{}, fmt.Errorf("primesim: encode transaction: %w", err)
	}
	var secret [16]byte
	_, _ = rand.Read(secret[:])
	return Transaction{
		ID:   id,
		JSON: string(body),
		EnvVars: map[string]string{
			"SMART_CONTRACT_ID": contractID,
			"DRAGONCHAIN_ID":    dcID,
			"STAGE":             "test",
		},
		Secrets: map[string]string{
			"secret-key":  hex.EncodeToString(secret[:]),
			"auth-key-id": "PRIMESIM",
		},
	}, nil
}

// Generate submits count Dragonchain-shaped transactions to contractID at
// rate transactions per second (0 or less: as fast as possible). It returns
// when all are submitted, at the first Submit error, or when ctx ends.
func (s *Server) Generate(ctx context.Context, contractID string, count int, rate float64) error {
	return s.generate(ctx, contractID, 0, count, count, rate)
}

// GenerateUpTo is Generate for a load of total transactions that may have
// begun before a crash: it submits transactions to contractID until
// total have been submitted to it over the server's life (with a state
// file, the file's; without one, this Server's), numbering them on from
// there. A Server restarted on its state file thus completes the load of
// the one that died, with new transaction IDs.
func (s *Server) GenerateUpTo(ctx context.Context, contractID string, total int, rate float64) error {
	s.mu.Lock()
	c := s.contracts[contractID]
	from := 0
	if c != nil {
		from = c.submitted
	}
	s.mu.Unlock()
	if c == nil {
		return fmt.Errorf("%w: %q", ErrUnknownContract, contractID)
	}
	return s.generate(ctx, contractID, from, total, total, rate)
}

// generate submits transactions from to to-1 of a load of of.
func (s *Server) generate(ctx context.Context, contractID string, from, to, of int, rate float64) error {
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(float64(time.Second) / rate)
	}
	start := time.Now()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for i := from; i < to; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if interval > 0 {
			// Schedule against the start time so that timer slack does not
			// accumulate; a late sender catches up in a short burst.
			if wait := time.Until(start.Add(time.Duration(i-from) * interval)); wait > 0 {
				if timer == nil {
					timer = time.NewTimer(wait)
				} else {
					timer.Reset(wait)
				}
				select {
				case <-timer.C:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		tx, err := s.NewTransaction(contractID, i, of)
		if err != nil {
			return err
		}
		if _, err := s.Submit(contractID, tx); err != nil {
			return err
		}
	}
	return nil
}
