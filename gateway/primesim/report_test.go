package primesim_test

import (
	"context"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway/primesim"
)

// TestWaitReportCountsLateDuplicates: WaitReport waits Settle after the
// last first answer, so a duplicate answer that follows it is in the
// report.
func TestWaitReportCountsLateDuplicates(t *testing.T) {
	const settle = 3 * time.Second // the late duplicate must come within it on a loaded machine
	s := newServer(t, primesim.Config{Settle: settle})
	tx := submitN(t, s, contract, 1)
	st := openOK(t, dial(t, s), contract)
	recvN(t, st, 1)
	answer(t, st, tx[0])
	waitAnswered(t, s, 1)
	answered := time.Now()

	type result struct {
		r   primesim.Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		r, err := s.WaitReport(ctx, 1)
		done <- result{r, err}
	}()
	answer(t, st, tx[0]) // late: after the transaction counted as answered
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	if el := time.Since(answered); el < settle {
		t.Fatalf("WaitReport returned %v after the first answer, before Settle (%v)", el, settle)
	}
	if r := res.r; r.OK() || r.AnsweredMoreThanOnce != 1 || r.DuplicateAnswers != 1 {
		t.Fatalf("report misses the late duplicate:\n%v", r)
	}

	// Cut short by its context, it returns the report as it is.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if r, err := s.WaitReport(ctx, 2); err == nil || r.Answered != 1 {
		t.Fatalf("WaitReport on a cancelled context: %v, answered %d", err, r.Answered)
	}
}
