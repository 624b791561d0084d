package primesim

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gridmesh/gridmesh/internal/latency"
)

// maxMissingIDs caps Report.MissingIDs.
const maxMissingIDs = 20

// Report is a snapshot of the simulator's books.
type Report struct {
	// Submitted counts transactions accepted by Submit.
	Submitted int
	// Delivered counts successful sends, redeliveries included.
	Delivered int
	// Redelivered counts sends of a transaction after its first one.
	Redelivered int
	// Answered counts distinct transactions that received a response.
	Answered int
	// AnsweredMoreThanOnce counts transactions that received more than one
	// response; DuplicateAnswers counts the surplus responses themselves.
	AnsweredMoreThanOnce int
	DuplicateAnswers     int
	// Missing counts submitted transactions that were never answered;
	// MissingIDs lists the oldest of them (at most 20).
	Missing    int
	MissingIDs []string
	// Unexpected counts responses whose transaction_id was never submitted
	// for the stream's contract.
	Unexpected int
	// ErrorResponses counts first responses with a non-empty error field.
	// A contract error is a valid answer, so it does not affect OK.
	ErrorResponses int
	// Latency from Submit to the first response, over answered transactions.
	LatencyP50 time.Duration
	LatencyP99 time.Duration
	LatencyMax time.Duration
	// Streams accepted, refused by the metadata checks, and replaced by a
	// newer stream for the same contract.
	StreamsAccepted int
	StreamsRejected int
	StreamsReplaced int
	// With a state file (State true): the transactions read from it at
	// start and how many of them were unanswered, to be delivered again;
	// and the distinct transactions whose first answer is written to it.
	State               bool
	Recovered           int
	RecoveredUnanswered int
	DurableAnswered     int
}

// OK reports whether every submitted transaction was answered exactly once
// and no response referred to an unknown transaction.
func (r Report) OK() bool {
	return r.Missing == 0 && r.AnsweredMoreThanOnce == 0 && r.Unexpected == 0 && r.Answered == r.Submitted
}

// String renders the report as a small table.
func (r Report) String() string {
	var b strings.Builder
	verdict := "OK (every transaction answered exactly once)"
	if !r.OK() {
		verdict = "FAILED"
	}
	fmt.Fprintf(&b, "primesim report: %s\n", verdict)
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "  submitted\t%d\t\n", r.Submitted)
	fmt.Fprintf(w, "  delivered\t%d\t(redelivered %d)\n", r.Delivered, r.Redelivered)
	fmt.Fprintf(w, "  answered\t%d\t(error responses %d)\n", r.Answered, r.ErrorResponses)
	fmt.Fprintf(w, "  answered more than once\t%d\t(surplus responses %d)\n", r.AnsweredMoreThanOnce, r.DuplicateAnswers)
	fmt.Fprintf(w, "  missing\t%d\t\n", r.Missing)
	fmt.Fprintf(w, "  unexpected\t%d\t\n", r.Unexpected)
	fmt.Fprintf(w, "  latency\tp50 %v\tp99 %v  max %v\n", r.LatencyP50, r.LatencyP99, r.LatencyMax)
	fmt.Fprintf(w, "  streams\taccepted %d\trejected %d  replaced %d\n", r.StreamsAccepted, r.StreamsRejected, r.StreamsReplaced)
	if r.State {
		fmt.Fprintf(w, "  state file\trecovered %d\t(unanswered %d)  answers written %d\n", r.Recovered, r.RecoveredUnanswered, r.DurableAnswered)
	}
	_ = w.Flush()
	if len(r.MissingIDs) > 0 {
		fmt.Fprintf(&b, "  oldest missing: %s\n", strings.Join(r.MissingIDs, ", "))
	}
	return b.String()
}

// WaitReport waits until at least n distinct transactions have been
// answered (as WaitAnswered) and then until Config.Settle has passed
// since the last first answer, so that duplicate answers arriving late
// are counted, and returns the report. If ctx ends first it returns the
// report as it is then, with an error.
func (s *Server) WaitReport(ctx context.Context, n int) (Report, error) {
	if err := s.WaitAnswered(ctx, n); err != nil {
		return s.Report(), err
	}
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		s.mu.Lock()
		wait := time.Until(s.lastFirst.Add(s.cfg.Settle))
		s.mu.Unlock()
		if wait <= 0 {
			return s.Report(), nil
		}
		t.Reset(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			return s.Report(), fmt.Errorf("primesim: settling after the last answer: %w", context.Cause(ctx))
		}
	}
}

// Report returns a snapshot of the books. It may be called at any time,
// including after Close.
func (s *Server) Report() Report {
	s.mu.Lock()
	st := s.stats
	r := Report{
		Submitted:            st.submitted,
		Delivered:            st.delivered,
		Redelivered:          st.redelivered,
		Answered:             st.answered,
		AnsweredMoreThanOnce: st.answeredMoreThanOnce,
		DuplicateAnswers:     st.duplicateAnswers,
		Unexpected:           st.unexpected,
		ErrorResponses:       st.errorResponses,
		StreamsAccepted:      st.streamsAccepted,
		StreamsRejected:      st.streamsRejected,
		StreamsReplaced:      st.streamsReplaced,
		State:                s.state != nil,
		Recovered:            st.recovered,
		RecoveredUnanswered:  st.recoveredUnanswered,
		DurableAnswered:      st.durableAnswered,
	}
	latencies := make([]time.Duration, 0, st.answered)
	var missing []*txState
	for _, c := range s.contracts {
		for _, tx := range c.txs {
			if tx.answered == 0 {
				missing = append(missing, tx)
				continue
			}
			latencies = append(latencies, tx.firstAnswer.Sub(tx.submitted))
		}
	}
	s.mu.Unlock()

	r.Missing = len(missing)
	slices.SortFunc(missing, func(a, b *txState) int { return a.seq - b.seq })
	for _, tx := range missing[:min(len(missing), maxMissingIDs)] {
		r.MissingIDs = append(r.MissingIDs, tx.id)
	}
	p := latency.Percentiles(latencies, 50, 99, 100)
	r.LatencyP50, r.LatencyP99, r.LatencyMax = p[0], p[1], p[2]
	return r
}
