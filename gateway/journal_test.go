package gateway_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/gateway/primesim"
	"github.com/gridmesh/gridmesh/gateway/wire"
	"github.com/gridmesh/gridmesh/internal/testcluster"
	"github.com/gridmesh/gridmesh/internal/testutil"
)

func TestJournalPutGetPrune(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	j, err := gateway.OpenJournal(path, gateway.JournalOptions{Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for _, id := range []string{"a", "b"} {
		if err := j.Put(&wire.TxResult{ID: id, ResultJSON: `{"id":"` + id + `"}`}); err != nil {
			t.Fatal(err)
		}
	}
	res, ok, err := j.Get("a")
	if err != nil || !ok || res.ResultJSON != `{"id":"a"}` {
		t.Fatalf("Get = %+v, %v, %v", res, ok, err)
	}
	if _, ok, _ := j.Get("zzz"); ok {
		t.Fatal("found a result never put")
	}
	j.MarkSent("a")
	// Marks are written in the background: prune until a's is.
	testutil.WaitUntil(t, "a to be pruned", func() bool {
		n, err := j.Prune(time.Now().Add(2 * time.Hour))
		return err == nil && n == 1
	})
	if _, ok, _ := j.Get("a"); ok {
		t.Fatal("sent result older than retention not pruned")
	}
	if _, ok, _ := j.Get("b"); !ok {
		t.Fatal("unsent result pruned")
	}
	if n, _ := j.Prune(time.Now()); n != 0 || j.Len() != 1 {
		t.Fatalf("pruned %d, left %d", n, j.Len())
	}
	// The file is locked while open.
	if _, err := gateway.OpenJournal(path, gateway.JournalOptions{}); err == nil {
		t.Fatal("second open of a locked journal succeeded")
	}
}

// TestJournalAnswersRedelivery: transactions answered by one gateway are
// delivered again (a Prime that lost the answers, or a restarted gateway
// that had not sent them); the next gateway, on the same journal, answers
// them from it without running them, with the same results.
func TestJournalAnswersRedelivery(t *testing.T) {
	const n = 50
	journal := filepath.Join(t.TempDir(), "journal.db")
	first := testcluster.StartPrime(t, primesim.Config{})
	g1 := testcluster.NewGate(nil)
	c1 := testcluster.Start(t, testcluster.Options{Workers: 2, Prime: testcluster.PrimeConfig(first), Contract: g1.Contract, JournalPath: journal})
	ids := testcluster.Submit(t, first, n)
	testcluster.WaitAnswered(t, first, n, c1)
	c1.Stop()

	second := testcluster.StartPrime(t, primesim.Config{})
	for i, id := range ids {
		tx, err := second.NewTransaction(testcluster.ContractID, i, n)
		if err != nil {
			t.Fatal(err)
		}
		tx.ID = id
		if _, err := second.Submit(testcluster.ContractID, tx); err != nil {
			t.Fatal(err)
		}
	}
	fresh := testcluster.Submit(t, second, 10)
	g2 := testcluster.NewGate(nil)
	c2 := testcluster.Start(t, testcluster.Options{Workers: 2, Prime: testcluster.PrimeConfig(second), Contract: g2.Contract, JournalPath: journal})
	testcluster.WaitAnswered(t, second, n+10, c2)
	c2.Stop()
	testcluster.CheckReport(t, second, n+10)
	if st := c2.Gateway.Stats(); st.FromJournal != n || st.Started != 10 {
		t.Fatalf("want %d from the journal and 10 run: %+v", n, st)
	}
	for _, id := range ids {
		if g2.RunsOf(id) != 0 {
			t.Fatalf("%s ran again", id)
		}
		a, _ := first.Answer(testcluster.ContractID, id)
		b, _ := second.Answer(testcluster.ContractID, id)
		if a.GetResultJson() != b.GetResultJson() || a.GetResultJson() == "" {
			t.Fatalf("journal answer %q, original %q", b.GetResultJson(), a.GetResultJson())
		}
	}
	for _, id := range fresh {
		if g2.RunsOf(id) != 1 {
			t.Fatalf("new transaction %s ran %d times", id, g2.RunsOf(id))
		}
	}
}

// TestJournalPrunesUnmarkedAfterMaxAge: a result whose "sent" mark was
// lost (a kill -9 right after the send; Prime has the answer and never
// delivers the transaction again) is kept past Retention, in case Prime
// does, but not forever: MaxAge bounds it.
func TestJournalPrunesUnmarkedAfterMaxAge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.db")
	opts := gateway.JournalOptions{Retention: time.Hour, MaxAge: 48 * time.Hour}
	j, err := gateway.OpenJournal(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Put(&wire.TxResult{ID: "unmarked", ResultJSON: `{}`}); err != nil {
		t.Fatal(err)
	}
	// No MarkSent, as after a crash; the next gateway opens the file.
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if j, err = gateway.OpenJournal(path, opts); err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	now := time.Now()
	if n, err := j.Prune(now.Add(2 * time.Hour)); err != nil || n != 0 {
		t.Fatalf("past Retention: pruned %d (%v), want the unsent result kept", n, err)
	}
	if n, err := j.Prune(now.Add(49 * time.Hour)); err != nil || n != 1 || j.Len() != 0 {
		t.Fatalf("past MaxAge: pruned %d (%v), %d left", n, err, j.Len())
	}
	if _, err := gateway.OpenJournal(filepath.Join(t.TempDir(), "x.db"), gateway.JournalOptions{MaxAge: -1}); err == nil {
		t.Fatal("negative MaxAge accepted")
	}
}
