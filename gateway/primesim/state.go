package primesim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	pb "github.com/gridmesh/gridmesh/proto"
)

// The state file's layout (bbolt). Transactions are keyed by seq, 8 bytes
// big-endian, so that a cursor walks them oldest first.
//
//	meta  "version"  stateVersion
//	      "next_seq" uvarint: the next transaction's seq
//	      "base"     counters of the transactions pruned (storedCounters)
//	      "events"   stream and unexpected-response counts (storedCounters)
//	      "pruned/" + contract ID   uvarint: its transactions pruned
//	tx    seq → txRecord: contract, ID, submitted, delivered, answered, first answer
//	req   seq → SmartContractRequest (protobuf), while unanswered
//	resp  seq → the first SmartContractResponse (protobuf), once answered
var (
	bucketMeta = []byte("meta")
	bucketTx   = []byte("tx")
	bucketReq  = []byte("req")
	bucketResp = []byte("resp")

	keyVersion = []byte("version")
	keyNextSeq = []byte("next_seq")
	keyBase    = []byte("base")
	keyEvents  = []byte("events")
)

const (
	stateVersion  = "primesim state 1"
	prunedKeyPfx  = "pruned/"
	stateOpenWait = time.Second // bolt's wait for another process's lock
)

// state is what a Server with a state file adds: the database and the
// changes waiting for the next commit. Its fields are guarded by
// Server.mu, except those the commit loop alone uses (marked).
type state struct {
	db                          *bolt.DB
	interval, window, retention time.Duration
	dirty                       []*txState     // submitted or delivered since their last write
	answers                     []answerEvent  // answers not yet written, in arrival order
	answered                    []*txState     // first answer written, in that order: for pruning
	kick                        chan struct{}  // wakes the commit loop: something became due
	quit, done                  chan struct{}  // Close → commit loop; commit loop exits
	durableCh                   chan struct{}  // closed and replaced when durableAnswered grows
	lastCommit                  time.Time      // commit loop only
	base                        storedCounters // of the pruned transactions; commit loop only
	pruned                      map[string]int // per contract; commit loop only
	failing                     bool           // the last commit failed; commit loop only
	written                     storedCounters // events last written; commit loop only
	writtenNextSeq              int            // commit loop only
}

// answerEvent is one answer (first or duplicate) not yet written.
type answerEvent struct {
	st *txState
	at time.Time
}

// markDirty queues st for the next commit. Caller holds Server.mu.
func (st *state) markDirty(tx *txState) {
	if tx.dirty {
		return
	}
	tx.dirty = true
	st.dirty = append(st.dirty, tx)
	if len(st.dirty) == 1 {
		st.wake()
	}
}

// answerArrived queues an answer of tx for the commit that comes after
// it is LossWindow old. Caller holds Server.mu.
func (st *state) answerArrived(tx *txState, at time.Time) {
	st.answers = append(st.answers, answerEvent{tx, at})
	if len(st.answers) == 1 {
		st.wake()
	}
}

func (st *state) wake() {
	select {
	case st.kick <- struct{}{}:
	default:
	}
}

// storedCounters are the counts that outlive their transactions' records
// (base) or have none (events).
type storedCounters struct {
	submitted, delivered, redelivered, answered, moreThanOnce, duplicates, errResps uint64
	unexpected, accepted, rejected, replaced                                        uint64
}

func (c *storedCounters) fields() []*uint64 {
	return []*uint64{&c.submitted, &c.delivered, &c.redelivered, &c.answered, &c.moreThanOnce, &c.duplicates,
		&c.errResps, &c.unexpected, &c.accepted, &c.rejected, &c.replaced}
}

func (c storedCounters) encode() []byte {
	var b []byte
	for _, f := range c.fields() {
		b = binary.AppendUvarint(b, *f)
	}
	return b
}

func (c *storedCounters) decode(b []byte) error {
	for _, f := range c.fields() {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return errors.New("primesim: state file: bad counters")
		}
		*f, b = v, b[n:]
	}
	return nil
}

// add adds the counts a transaction contributes, as written.
func (c *storedCounters) add(r txRecord) {
	c.submitted++
	c.delivered += r.delivered
	c.redelivered += r.delivered - min(r.delivered, 1)
	if r.answered > 0 {
		c.answered++
		c.duplicates += r.answered - 1
		if r.answered > 1 {
			c.moreThanOnce++
		}
		if r.errResp {
			c.errResps++
		}
	}
}

// txRecord is a transaction's entry in bucket tx.
type txRecord struct {
	contract, id           string
	submitted, firstAnswer int64 // Unix nanoseconds; firstAnswer 0 while unanswered
	delivered, answered    uint64
	errResp                bool // the first answer has an error
}

func (r txRecord) encode() []byte {
	b := binary.AppendUvarint(nil, uint64(len(r.contract)))
	b = append(b, r.contract...)
	b = binary.AppendUvarint(b, uint64(len(r.id)))
	b = append(b, r.id...)
	b = binary.AppendVarint(b, r.submitted)
	b = binary.AppendVarint(b, r.firstAnswer)
	b = binary.AppendUvarint(b, r.delivered)
	b = binary.AppendUvarint(b, r.answered)
	if r.errResp {
		return append(b, 1)
	}
	return append(b, 0)
}

func decodeTxRecord(b []byte) (txRecord, error) {
	var r txRecord
	bad := errors.New("primesim: state file: bad transaction record")
	str := func() (string, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return "", false
		}
		s := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return s, true
	}
	var ok bool
	if r.contract, ok = str(); !ok {
		return r, bad
	}
	if r.id, ok = str(); !ok {
		return r, bad
	}
	for _, f := range []*int64{&r.submitted, &r.firstAnswer} {
		v, k := binary.Varint(b)
		if k <= 0 {
			return r, bad
		}
		*f, b = v, b[k:]
	}
	for _, f := range []*uint64{&r.delivered, &r.answered} {
		v, k := binary.Uvarint(b)
		if k <= 0 {
			return r, bad
		}
		*f, b = v, b[k:]
	}
	if len(b) != 1 {
		return r, bad
	}
	r.errResp = b[0] == 1
	return r, nil
}

func seqKey(seq int) []byte { return binary.BigEndian.AppendUint64(nil, uint64(seq)) }

func binaryUvarint(n int) []byte { return binary.AppendUvarint(nil, uint64(n)) }

// openState opens (or creates) cfg.StatePath, loads the books it holds and
// starts the commit loop. Called by New.
func (s *Server) openState() error {
	db, err := bolt.Open(s.cfg.StatePath, 0o600, &bolt.Options{Timeout: stateOpenWait})
	if err != nil {
		return fmt.Errorf("primesim: open state file %s (is another simulator using it?): %w", s.cfg.StatePath, err)
	}
	s.state = &state{
		db: db, interval: s.cfg.CommitInterval, window: s.cfg.LossWindow, retention: s.cfg.Retention,
		kick: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}),
		durableCh: make(chan struct{}), pruned: make(map[string]int),
	}
	if err := db.Update(s.load); err != nil {
		_ = db.Close()
		s.state = nil
		return fmt.Errorf("primesim: state file %s: %w", s.cfg.StatePath, err)
	}
	s.state.writtenNextSeq = s.nextSeq
	s.log.Info("state file loaded", "path", s.cfg.StatePath, "transactions", s.stats.recovered,
		"unanswered", s.stats.recoveredUnanswered, "submitted_ever", s.stats.submitted, "next_seq", s.nextSeq)
	go s.commitLoop()
	return nil
}

// load reads the books from the file into s (creating the buckets of a
// new file). It runs before the Server is shared, so it takes no lock.
func (s *Server) load(tx *bolt.Tx) error {
	st := s.state
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return err
	}
	for _, name := range [][]byte{bucketTx, bucketReq, bucketResp} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	switch v := meta.Get(keyVersion); {
	case v == nil:
		if err := meta.Put(keyVersion, []byte(stateVersion)); err != nil {
			return err
		}
	case string(v) != stateVersion:
		return fmt.Errorf("format %q, want %q", v, stateVersion)
	}
	if v := meta.Get(keyNextSeq); v != nil {
		n, k := binary.Uvarint(v)
		if k <= 0 {
			return errors.New("bad next_seq")
		}
		s.nextSeq = int(n)
	}
	var events storedCounters
	for key, c := range map[string]*storedCounters{string(keyBase): &st.base, string(keyEvents): &events} {
		if v := meta.Get([]byte(key)); v != nil {
			if err := c.decode(v); err != nil {
				return err
			}
		}
	}
	st.written = events
	for id, c := range s.contracts {
		if v := meta.Get([]byte(prunedKeyPfx + id)); v != nil {
			n, _ := binary.Uvarint(v)
			st.pruned[id] = int(n)
			c.submitted = int(n)
		}
	}
	total := st.base
	err = tx.Bucket(bucketTx).ForEach(func(k, v []byte) error {
		r, err := decodeTxRecord(v)
		if err != nil {
			return err
		}
		total.add(r)
		return s.loadTx(tx, k, r)
	})
	if err != nil {
		return err
	}
	slices.SortFunc(st.answered, func(a, b *txState) int { return a.firstAnswer.Compare(b.firstAnswer) })
	s.stats.submitted, s.stats.delivered, s.stats.redelivered = int(total.submitted), int(total.delivered), int(total.redelivered)
	s.stats.answered, s.stats.answeredMoreThanOnce = int(total.answered), int(total.moreThanOnce)
	s.stats.duplicateAnswers, s.stats.errorResponses = int(total.duplicates), int(total.errResps)
	s.stats.unexpected, s.stats.streamsAccepted = int(events.unexpected), int(events.accepted)
	s.stats.streamsRejected, s.stats.streamsReplaced = int(events.rejected), int(events.replaced)
	s.stats.durableAnswered = s.stats.answered
	return nil
}

// loadTx rebuilds one transaction of the file, key k, in memory.
func (s *Server) loadTx(tx *bolt.Tx, k []byte, r txRecord) error {
	c := s.contracts[r.contract]
	if c == nil {
		return fmt.Errorf("transaction %s belongs to smart contract %q, which is not configured", r.id, r.contract)
	}
	if len(k) != 8 {
		return errors.New("bad transaction key")
	}
	t := &txState{
		id: r.id, contract: c, seq: int(binary.BigEndian.Uint64(k)), submitted: time.Unix(0, r.submitted),
		delivered: int(r.delivered), answered: int(r.answered), durable: true,
		durDelivered: int(r.delivered), durAnswered: int(r.answered),
	}
	s.stats.recovered++
	c.txs[t.id] = t
	c.submitted++
	if r.answered > 0 {
		t.firstAnswer = time.Unix(0, r.firstAnswer)
		t.response = new(pb.SmartContractResponse)
		if err := unmarshalStored(tx.Bucket(bucketResp).Get(k), t.response); err != nil {
			return fmt.Errorf("transaction %s: answer: %w", r.id, err)
		}
		s.state.answered = append(s.state.answered, t)
		return nil
	}
	t.req = new(pb.SmartContractRequest)
	if err := unmarshalStored(tx.Bucket(bucketReq).Get(k), t.req); err != nil {
		return fmt.Errorf("transaction %s: request: %w", r.id, err)
	}
	s.stats.recoveredUnanswered++
	c.pending++
	c.order = append(c.order, t) // the cursor walks in seq order
	return nil
}

// unmarshalStored decodes a stored message, which must be there.
func unmarshalStored(b []byte, m proto.Message) error {
	if b == nil {
		return errors.New("missing")
	}
	return proto.Unmarshal(b, m)
}
