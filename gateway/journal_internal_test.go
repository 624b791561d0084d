package gateway

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway/wire"
)

// syncLog is a log destination tests can read while loggers write.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestJournalMarksSlowDisk: while the journal's disk is stuck (a write of
// marks that does not return), MarkSent does not block: marks pile up to
// MaxPendingMarks, the rest are dropped, counted and logged once; once
// the disk is back, the pending marks go out in one write. Dropped marks
// leave their results unmarked, kept until MaxAge.
func TestJournalMarksSlowDisk(t *testing.T) {
	const bound, marks = 10, 50
	var (
		mu     sync.Mutex
		writes []int // marks per write
	)
	stuck, release := make(chan struct{}), make(chan struct{})
	hook := func(n int) {
		mu.Lock()
		writes = append(writes, n)
		first := len(writes) == 1
		mu.Unlock()
		if first {
			close(stuck)
			<-release
		}
	}
	logs := new(syncLog)
	j, err := openJournal(filepath.Join(t.TempDir(), "j.db"), JournalOptions{
		Retention: time.Hour, MaxPendingMarks: bound, Logger: slog.New(slog.NewTextHandler(logs, nil)),
	}, hook)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release) // a failed test must not leave the writer stuck
		}
	}()
	id := func(i int) string { return fmt.Sprintf("tx-%d", i) }
	for i := range marks + 1 {
		if err := j.Put(&wire.TxResult{ID: id(i), ResultJSON: "{}"}); err != nil {
			t.Fatal(err)
		}
	}
	j.MarkSent(id(0))
	select {
	case <-stuck:
	case <-time.After(dispatchTestTimeout):
		t.Fatal("the mark was never written")
	}
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := 1; i <= marks; i++ {
			j.MarkSent(id(i))
		}
	}()
	select {
	case <-sent:
	case <-time.After(dispatchTestTimeout):
		t.Fatal("MarkSent blocked while the disk was stuck")
	}
	if st := j.Stats(); st.MarksPending != bound || st.MarksDropped != marks-bound {
		t.Fatalf("stats %+v, want %d pending and %d dropped", st, bound, marks-bound)
	}
	if n := strings.Count(logs.String(), "journal marks dropped"); n != 1 {
		t.Fatalf("%d drop warnings, want 1:\n%s", n, logs)
	}

	close(release)
	deadline := time.Now().Add(dispatchTestTimeout)
	for {
		mu.Lock()
		w := slices.Clone(writes)
		mu.Unlock()
		if len(w) == 2 && j.Stats().MarksPending == 0 {
			if w[0] != 1 || w[1] != bound {
				t.Fatalf("marks per write %v, want [1 %d]: the pending ones in one write", w, bound)
			}
			break
		}
		if time.Now().After(deadline) || len(w) > 2 {
			t.Fatalf("writes %v, stats %+v", w, j.Stats())
		}
		time.Sleep(2 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "no longer dropped") {
		t.Fatalf("end of the drops not logged:\n%s", logs)
	}
	// Sent and past Retention: the marked ones; the dropped ones stay.
	if n, err := j.Prune(time.Now().Add(2 * time.Hour)); err != nil || n != bound+1 || j.Len() != marks-bound {
		t.Fatalf("pruned %d (%v), %d left; want %d pruned, %d left", n, err, j.Len(), bound+1, marks-bound)
	}
}

func TestJournalMaxPendingMarksNegative(t *testing.T) {
	if _, err := OpenJournal(filepath.Join(t.TempDir(), "j.db"), JournalOptions{MaxPendingMarks: -1}); err == nil {
		t.Fatal("negative MaxPendingMarks accepted")
	}
}
