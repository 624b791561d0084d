package primesim_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/gridmesh/gridmesh/gateway/primesim"
	pb "github.com/gridmesh/gridmesh/proto"
)

// payloadSeq is the load generator's sequence number in a transaction.
func payloadSeq(t *testing.T, req *pb.SmartContractRequest) int {
	t.Helper()
	var tx struct {
		Payload struct {
			Seq int `json:"seq"`
		} `json:"payload"`
	}
	if err := json.Unmarshal([]byte(req.GetTransactionJson()), &tx); err != nil {
		t.Fatal(err)
	}
	return tx.Payload.Seq
}

// reportHas reports whether a printed report holds want, whatever the
// amount of white space between its words.
func reportHas(report, want string) bool {
	return strings.Contains(strings.Join(strings.Fields(report), " "), want)
}

// TestStateSurvivesKill9 kills a simulator process with SIGKILL while 7 of
// its 10 transactions are unanswered, then starts another on the same
// state file with a load of 12: it delivers the 7 again, oldest first,
// then 2 new transactions with new IDs, and its report counts all 12
// answered exactly once.
func TestStateSurvivesKill9(t *testing.T) {
	path := filepath.Join(t.TempDir(), "prime.db")
	first := startSim(t, childArgs{state: path, count: 10})
	st := openOK(t, dialAddr(t, first.addr), contract)
	reqs := recvN(t, st, 10)
	for i, req := range reqs {
		if got := payloadSeq(t, req); got != i {
			t.Fatalf("transaction %d has seq %d", i, got)
		}
	}
	for _, i := range []int{0, 2, 4} {
		answer(t, st, reqs[i].GetTransactionId())
	}
	first.waitDurable(t, 3)
	first.kill9(t)

	second := startSim(t, childArgs{state: path, count: 12})
	st = openOK(t, dialAddr(t, second.addr), contract)
	got := recvN(t, st, 9)
	var want []string
	for _, i := range []int{1, 3, 5, 6, 7, 8, 9} {
		want = append(want, reqs[i].GetTransactionId())
	}
	if !equal(ids(got[:7]), want) {
		t.Fatalf("after the restart got %v first, want the unanswered %v, oldest first", ids(got[:7]), want)
	}
	seen := ids(reqs)
	for i, req := range got[7:] {
		if slices.Contains(seen, req.GetTransactionId()) {
			t.Fatalf("new transaction %d reuses ID %s", i, req.GetTransactionId())
		}
		seen = append(seen, req.GetTransactionId())
		if seq := payloadSeq(t, req); seq != 10+i {
			t.Fatalf("new transaction %d has seq %d, want %d", i, seq, 10+i)
		}
	}
	for _, req := range got {
		answer(t, st, req.GetTransactionId())
	}
	second.waitDurable(t, 12)
	out := second.term(t)
	t.Logf("after the restart:\n%s", out)
	for _, want := range []string{"submitted 12", "redelivered 7", "answered more than once 0", "recovered 10 (unanswered 7)"} {
		if !reportHas(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// TestLossWindowLosesRecentAnswers: with a LossWindow, answers older than
// the window (and a commit interval) survive kill -9 and those of the
// window are lost: the restarted simulator delivers their transactions
// again, and counts each answered once.
func TestLossWindowLosesRecentAnswers(t *testing.T) {
	const window = 1500 * time.Millisecond
	path := filepath.Join(t.TempDir(), "prime.db")
	// The child kills itself with SIGKILL as soon as all 10 are answered.
	first := startSim(t, childArgs{state: path, count: 10, window: window, killAt: 10})
	st := openOK(t, dialAddr(t, first.addr), contract)
	reqs := recvN(t, st, 10)
	sent := time.Now()
	for _, req := range reqs[:5] {
		answer(t, st, req.GetTransactionId())
	}
	first.waitDurable(t, 5)
	if el := time.Since(sent); el < window {
		t.Fatalf("answers written %v after they were sent, before the loss window of %v", el, window)
	}
	for _, req := range reqs[5:] {
		answer(t, st, req.GetTransactionId())
	}
	first.expectKilled(t)

	second := startSim(t, childArgs{state: path, count: 10})
	st = openOK(t, dialAddr(t, second.addr), contract)
	if got := ids(recvN(t, st, 5)); !equal(got, ids(reqs[5:])) {
		t.Fatalf("after the crash got %v, want the transactions whose answers were lost %v", got, ids(reqs[5:]))
	}
	for _, req := range reqs[5:] {
		answer(t, st, req.GetTransactionId())
	}
	second.waitDurable(t, 10)
	out := second.term(t)
	t.Logf("after the restart:\n%s", out)
	for _, want := range []string{"answered 10", "answered more than once 0", "recovered 10 (unanswered 5)"} {
		if !reportHas(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// TestStateCloseWritesEverything: Close writes the answers a LossWindow
// still holds back, so a clean stop loses nothing; a Server on the same
// file finds the books as they were.
func TestStateCloseWritesEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), "prime.db")
	cfg := primesim.Config{ChainID: chainID, StatePath: path, LossWindow: time.Hour}
	s := newServer(t, cfg)
	all := submitN(t, s, contract, 4)
	st := openOK(t, dial(t, s), contract)
	recvN(t, st, 4)
	answer(t, st, all[0])
	answer(t, st, all[0]) // a duplicate
	answer(t, st, all[1])
	waitAnswered(t, s, 2)
	if r := s.Report(); r.DurableAnswered != 0 {
		t.Fatalf("%d answers written within a loss window of an hour", r.DurableAnswered)
	}
	_ = s.Close()
	want := s.Report()

	s = newServer(t, cfg)
	r := s.Report()
	if r.Submitted != 4 || r.Answered != 2 || r.DuplicateAnswers != 1 || r.Delivered != want.Delivered ||
		r.StreamsAccepted != 1 || r.Recovered != 4 || r.RecoveredUnanswered != 2 || !equal(r.MissingIDs, all[2:]) {
		t.Fatalf("reopened:\n%v\nwant as closed:\n%v", r, want)
	}
	if resp, ok := s.Answer(contract, all[1]); !ok || resp.GetResultJson() != `{"ok":true}` {
		t.Fatalf("Answer(%s) after reopening = %v, %v", all[1], resp, ok)
	}
	st = openOK(t, dial(t, s), contract)
	if got := ids(recvN(t, st, 2)); !equal(got, all[2:]) {
		t.Fatalf("reopened server delivered %v, want %v", got, all[2:])
	}
}

// TestStateDeliversOnlyWritten: with a state file a transaction is not
// delivered before it is written, so that a crash cannot forget one that
// a client ran. The commit interval of an hour holds the second
// transaction back until Close writes it.
func TestStateDeliversOnlyWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "prime.db")
	cfg := primesim.Config{ChainID: chainID, StatePath: path, CommitInterval: time.Hour}
	s := newServer(t, cfg)
	st := openOK(t, dial(t, s), contract)
	first := submitN(t, s, contract, 1) // written at once: nothing was for an hour
	if got := ids(recvN(t, st, 1)); !equal(got, first) {
		t.Fatalf("got %v, want %v", got, first)
	}
	second := submitN(t, s, contract, 1) // due in an hour
	// Watch the stream for a moment; Close ends it.
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		time.Sleep(100 * time.Millisecond)
		_ = s.Close()
	}()
	req, err := st.Recv()
	<-closed
	if err == nil {
		t.Fatalf("transaction %s delivered before it was written", req.GetTransactionId())
	}
	s = newServer(t, cfg)
	st = openOK(t, dial(t, s), contract)
	if got := ids(recvN(t, st, 2)); !equal(got, append(first, second...)) {
		t.Fatalf("reopened, got %v, want %v", got, append(first, second...))
	}
}

// TestStateRetentionPrunes: answered transactions leave the file after
// Retention, and their counts stay.
func TestStateRetentionPrunes(t *testing.T) {
	const n = 20
	path := filepath.Join(t.TempDir(), "prime.db")
	cfg := primesim.Config{ChainID: chainID, StatePath: path, Retention: 50 * time.Millisecond}
	s := newServer(t, cfg)
	all := submitN(t, s, contract, n)
	st := openOK(t, dial(t, s), contract)
	recvN(t, st, n)
	for _, id := range all {
		answer(t, st, id)
	}
	waitAnswered(t, s, n)
	deadline := time.Now().Add(testTimeout)
	for _, id := range all {
		for _, ok := s.Answer(contract, id); ok; _, ok = s.Answer(contract, id) {
			if time.Now().After(deadline) {
				t.Fatalf("transaction %s not pruned after %v", id, testTimeout)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	_ = s.Close()

	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, bucket := range []string{"tx", "req", "resp"} {
		_ = db.View(func(tx *bolt.Tx) error {
			if k := tx.Bucket([]byte(bucket)).Stats().KeyN; k != 0 {
				t.Errorf("bucket %s holds %d keys after pruning", bucket, k)
			}
			return nil
		})
	}
	_ = db.Close()

	s = newServer(t, cfg)
	if r := s.Report(); !r.OK() || r.Submitted != n || r.Answered != n || r.Delivered != n || r.Recovered != 0 {
		t.Fatalf("reopened after pruning:\n%v", r)
	}
	// Generating up to n more submits nothing: the load is complete.
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := s.GenerateUpTo(ctx, contract, n, 0); err != nil || s.Report().Submitted != n {
		t.Fatalf("GenerateUpTo(%d) = %v, submitted %d", n, err, s.Report().Submitted)
	}
}

func TestStateConfig(t *testing.T) {
	if _, err := primesim.New(primesim.Config{APIKey: "k", Contracts: []string{"a"}, LossWindow: time.Second}); err == nil {
		t.Error("LossWindow without StatePath accepted")
	}
	path := filepath.Join(t.TempDir(), "prime.db")
	s := newServer(t, primesim.Config{StatePath: path})
	submitN(t, s, "sc-2", 1)
	if err := s.WaitDurable(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	// A configuration without the file's contract is refused.
	if _, err := primesim.New(primesim.Config{APIKey: "k", Contracts: []string{contract}, StatePath: path}); err == nil || !strings.Contains(err.Error(), "sc-2") {
		t.Errorf("New on a file with an unconfigured contract: %v", err)
	}
	mem := newServer(t, primesim.Config{})
	if err := mem.WaitDurable(context.Background(), 1); !errors.Is(err, primesim.ErrNoState) {
		t.Errorf("WaitDurable without a state file: %v", err)
	}
}
