package primesim

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	pb "github.com/gridmesh/gridmesh/proto"
)

// batch is one commit: what snapshot took from the books under Server.mu,
// written without it.
type batch struct {
	w       []txWrite
	dirty   []*txState    // taken from state.dirty
	answers []answerEvent // taken from state.answers
	prune   []*txState    // taken from state.answered and the contracts
	pruneR  []txRecord    // their records as written
	nextSeq int
	events  storedCounters
}

// txWrite is one transaction's record to write.
type txWrite struct {
	t      *txState
	rec    txRecord
	req    *pb.SmartContractRequest  // a new submission's request, else nil
	first  *pb.SmartContractResponse // the first answer, written now, else nil
	newSub bool
}

// commitLoop writes the books' changes to the state file, at most once per
// CommitInterval and only when something is due, until Close; then it
// writes everything, the answers of the LossWindow included, and closes
// the file. New starts it; Close waits for it.
func (s *Server) commitLoop() {
	st := s.state
	defer close(st.done)
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		var due <-chan time.Time
		if d, ok := s.untilDue(); ok {
			t.Reset(d)
			due = t.C
		}
		select {
		case <-st.quit:
			t.Stop()
			s.commitLogged(true)
			if err := st.db.Close(); err != nil {
				s.log.Error("primesim: close state file", "err", err)
			}
			return
		case <-st.kick: // something new: when is it due?
			t.Stop()
			continue
		case <-due:
		}
		s.commitLogged(false)
	}
}

// untilDue returns how long until the next commit is due, and false if
// nothing waits. Called by the commit loop.
func (s *Server) untilDue() (time.Duration, bool) {
	st := s.state
	s.mu.Lock()
	defer s.mu.Unlock()
	earliest := st.lastCommit.Add(st.interval)
	var at time.Time
	consider := func(t time.Time) {
		t = later(t, earliest)
		if at.IsZero() || t.Before(at) {
			at = t
		}
	}
	if len(st.dirty) > 0 {
		consider(earliest)
	}
	if len(st.answers) > 0 {
		consider(st.answers[0].at.Add(st.window))
	}
	if len(st.answered) > 0 {
		consider(st.answered[0].firstAnswer.Add(st.retention))
	}
	if at.IsZero() {
		return 0, false
	}
	return max(0, time.Until(at)), true
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// commitLogged commits and logs a failure once, until a commit succeeds.
func (s *Server) commitLogged(final bool) {
	err := s.commit(final)
	st := s.state
	st.lastCommit = time.Now()
	switch {
	case err != nil && !st.failing:
		s.log.Error("primesim: writing the state file failed; retrying every commit interval", "err", err)
	case err == nil && st.failing:
		s.log.Info("primesim: writing the state file works again")
	}
	st.failing = err != nil
}

// commit writes what is due: every submission and delivery since the last
// commit, the answers at least LossWindow old (all of them if final), and
// the deletion of answered transactions past Retention.
func (s *Server) commit(final bool) error {
	st := s.state
	s.mu.Lock()
	b := s.snapshot(time.Now(), final)
	s.mu.Unlock()
	if len(b.w) == 0 && len(b.prune) == 0 && b.nextSeq == st.writtenNextSeq && b.events == st.written {
		return nil
	}
	base, pruned := st.base, make(map[string]int, len(st.pruned))
	for k, v := range st.pruned {
		pruned[k] = v
	}
	err := st.db.Update(func(tx *bolt.Tx) error { return b.write(tx, &base, pruned) })
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.restore(b)
		return err
	}
	st.base, st.pruned = base, pruned
	st.writtenNextSeq, st.written = b.nextSeq, b.events
	s.apply(b)
	return nil
}

// snapshot takes the batch to write from the books. Caller holds s.mu.
func (s *Server) snapshot(now time.Time, final bool) *batch {
	st := s.state
	b := &batch{nextSeq: s.nextSeq, events: storedCounters{
		unexpected: uint64(s.stats.unexpected), accepted: uint64(s.stats.streamsAccepted),
		rejected: uint64(s.stats.streamsRejected), replaced: uint64(s.stats.streamsReplaced),
	}}
	idx := make(map[*txState]int)
	add := func(t *txState) *txWrite {
		if i, ok := idx[t]; ok {
			return &b.w[i]
		}
		idx[t] = len(b.w)
		b.w = append(b.w, txWrite{t: t, rec: t.record(), newSub: !t.durable})
		if !t.durable {
			b.w[len(b.w)-1].req = t.req
		}
		return &b.w[len(b.w)-1]
	}
	b.dirty, st.dirty = st.dirty, nil
	for _, t := range b.dirty {
		t.dirty = false
		add(t)
	}
	cutoff := now.Add(-st.window)
	if final {
		cutoff = now
	}
	n := 0
	for n < len(st.answers) && !st.answers[n].at.After(cutoff) {
		n++
	}
	b.answers, st.answers = st.answers[:n:n], st.answers[n:]
	for _, e := range b.answers {
		w := add(e.st)
		w.rec.answered++
		if w.rec.answered == 1 {
			w.first = e.st.response
			w.rec.firstAnswer, w.rec.errResp = e.st.firstAnswer.UnixNano(), e.st.response.GetError() != ""
		}
	}
	limit := now.Add(-st.retention)
	for len(st.answered) > 0 {
		t := st.answered[0]
		if _, writing := idx[t]; writing || t.firstAnswer.After(limit) || t.answered != t.durAnswered {
			break
		}
		st.answered[0] = nil
		st.answered = st.answered[1:]
		b.prune, b.pruneR = append(b.prune, t), append(b.pruneR, t.record())
		delete(t.contract.txs, t.id)
	}
	return b
}

// record is t's entry as written so far (durAnswered answers). Caller
// holds s.mu.
func (t *txState) record() txRecord {
	r := txRecord{
		contract: t.contract.id, id: t.id, submitted: t.submitted.UnixNano(),
		delivered: uint64(t.delivered), answered: uint64(t.durAnswered),
	}
	if t.durAnswered > 0 {
		r.firstAnswer, r.errResp = t.firstAnswer.UnixNano(), t.response.GetError() != ""
	}
	return r
}

// write puts b into the file; base and pruned are updated with what is
// pruned.
func (b *batch) write(tx *bolt.Tx, base *storedCounters, pruned map[string]int) error {
	bt, bq, br, meta := tx.Bucket(bucketTx), tx.Bucket(bucketReq), tx.Bucket(bucketResp), tx.Bucket(bucketMeta)
	put := func(bk *bolt.Bucket, k []byte, m proto.Message) error {
		data, err := proto.Marshal(m)
		if err != nil {
			return err
		}
		return bk.Put(k, data)
	}
	for _, w := range b.w {
		k := seqKey(w.t.seq)
		if w.newSub {
			if err := put(bq, k, w.req); err != nil {
				return fmt.Errorf("transaction %s: %w", w.rec.id, err)
			}
		}
		if err := bt.Put(k, w.rec.encode()); err != nil {
			return err
		}
		if w.first != nil {
			if err := put(br, k, w.first); err != nil {
				return fmt.Errorf("transaction %s: %w", w.rec.id, err)
			}
			if err := bq.Delete(k); err != nil {
				return err
			}
		}
	}
	for i, t := range b.prune {
		k := seqKey(t.seq)
		for _, bk := range []*bolt.Bucket{bt, bq, br} {
			if err := bk.Delete(k); err != nil {
				return err
			}
		}
		base.add(b.pruneR[i])
		pruned[t.contract.id]++
		if err := meta.Put([]byte(prunedKeyPfx+t.contract.id), binaryUvarint(pruned[t.contract.id])); err != nil {
			return err
		}
	}
	if err := meta.Put(keyBase, base.encode()); err != nil {
		return err
	}
	if err := meta.Put(keyEvents, b.events.encode()); err != nil {
		return err
	}
	return meta.Put(keyNextSeq, binaryUvarint(b.nextSeq))
}

// apply records in the books what a commit wrote: new submissions become
// deliverable, answers durable, and WaitDurable wakes. Caller holds s.mu.
func (s *Server) apply(b *batch) {
	st := s.state
	grew := false
	for _, w := range b.w {
		t := w.t
		if w.newSub {
			t.durable = true
			t.contract.deliver(t, s.log)
		}
		t.durDelivered, t.durAnswered = max(t.durDelivered, int(w.rec.delivered)), int(w.rec.answered)
		if w.first != nil {
			s.stats.durableAnswered++
			st.answered = append(st.answered, t)
			grew = true
		}
	}
	if grew {
		close(st.durableCh)
		st.durableCh = make(chan struct{})
	}
}

// restore puts back what a failed commit took, to be written by the next
// one. Caller holds s.mu.
func (s *Server) restore(b *batch) {
	st := s.state
	var again []*txState
	for _, t := range b.dirty {
		if !t.dirty {
			t.dirty = true
			again = append(again, t)
		}
	}
	st.dirty = append(again, st.dirty...)
	st.answers = append(b.answers[:len(b.answers):len(b.answers)], st.answers...)
	for _, t := range b.prune {
		t.contract.txs[t.id] = t
	}
	st.answered = append(b.prune, st.answered...)
}

// WaitDurable blocks until at least n distinct transactions have their
// first answer written to the state file, or ctx ends. Without a state
// file it returns ErrNoState.
func (s *Server) WaitDurable(ctx context.Context, n int) error {
	if s.state == nil {
		return ErrNoState
	}
	for {
		s.mu.Lock()
		got, ch := s.stats.durableAnswered, s.state.durableCh
		s.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("primesim: %d of %d answers written: %w", got, n, context.Cause(ctx))
		}
	}
}
