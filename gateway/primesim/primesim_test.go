package primesim_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/gridmesh/gridmesh/gateway/primesim"
	pb "github.com/gridmesh/gridmesh/proto"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 10 * time.Second

const (
	apiKey   = "test-key"
	chainID  = "chain-1"
	contract = "sc-1"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(runChild(spec))
	}
	goleak.VerifyTestMain(m)
}

func newServer(t *testing.T, cfg primesim.Config) *primesim.Server {
	t.Helper()
	if cfg.APIKey == "" {
		cfg.APIKey = apiKey
	}
	if cfg.Contracts == nil {
		cfg.Contracts = []string{contract, "sc-2"}
	}
	if cfg.ChainID == "" {
		cfg.ChainID = chainID
	}
	s, err := primesim.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func dial(t *testing.T, s *primesim.Server, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	return dialAddr(t, s.Addr().String(), opts...)
}

func dialAddr(t *testing.T, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

type stream struct {
	pb.SmartContractService_RunClient
	cancel context.CancelFunc
}

// open starts a Run stream with the given metadata pairs; the stream's
// context carries testTimeout, so Recv never blocks longer than that.
func open(t *testing.T, conn *grpc.ClientConn, kv ...string) *stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	ctx = metadata.NewOutgoingContext(ctx, metadata.Pairs(kv...))
	st, err := pb.NewSmartContractServiceClient(conn).Run(ctx)
	if err != nil {
		cancel()
		t.Fatalf("Run: %v", err)
	}
	return &stream{st, cancel}
}

func openOK(t *testing.T, conn *grpc.ClientConn, cid string) *stream {
	t.Helper()
	return open(t, conn, "x-api-key", apiKey, "x-smart-contract-id", cid, "x-chain-id", chainID)
}

func recvN(t *testing.T, st *stream, n int) []*pb.SmartContractRequest {
	t.Helper()
	out := make([]*pb.SmartContractRequest, 0, n)
	for range n {
		req, err := st.Recv()
		if err != nil {
			t.Fatalf("Recv after %d of %d: %v", len(out), n, err)
		}
		out = append(out, req)
	}
	return out
}

func answer(t *testing.T, st *stream, id string) {
	t.Helper()
	if err := st.Send(&pb.SmartContractResponse{TransactionId: id, ResultJson: `{"ok":true}`}); err != nil {
		t.Fatalf("Send %s: %v", id, err)
	}
}

func submitN(t *testing.T, s *primesim.Server, cid string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range n {
		id, err := s.Submit(cid, primesim.Transaction{JSON: fmt.Sprintf(`{"n":%d}`, i)})
		if err != nil {
			t.Fatalf("Submit: %v", err)
		}
		ids[i] = id
	}
	return ids
}

func waitAnswered(t *testing.T, s *primesim.Server, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := s.WaitAnswered(ctx, n); err != nil {
		t.Fatalf("WaitAnswered(%d): %v\n%v", n, err, s.Report())
	}
}

func ids(reqs []*pb.SmartContractRequest) []string {
	out := make([]string, len(reqs))
	for i, r := range reqs {
		out[i] = r.GetTransactionId()
	}
	return out
}

func equal(a, b []string) bool {
	return strings.Join(a, ",") == strings.Join(b, ",")
}

// expectStatus receives until the stream fails and checks the status.
func expectStatus(t *testing.T, st *stream, code codes.Code, msg string) {
	t.Helper()
	for {
		_, err := st.Recv()
		if err == nil {
			continue
		}
		s, _ := status.FromError(err)
		if s.Code() != code || !strings.Contains(s.Message(), msg) {
			t.Fatalf("stream ended with %v, want code %v and message containing %q", err, code, msg)
		}
		return
	}
}

func TestConfigValidation(t *testing.T) {
	for name, cfg := range map[string]primesim.Config{
		"no api key":   {Contracts: []string{"a"}},
		"no contracts": {APIKey: "k"},
		"bad path":     {APIKey: "k", Contracts: []string{"a"}, MethodPath: "Run"},
		"dup contract": {APIKey: "k", Contracts: []string{"a", "a"}},
		"neg backlog":  {APIKey: "k", Contracts: []string{"a"}, MaxBacklog: -1},
		"neg settle":   {APIKey: "k", Contracts: []string{"a"}, Settle: -1},
	} {
		if _, err := primesim.New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}

func TestMetadataChecks(t *testing.T) {
	s := newServer(t, primesim.Config{ChainID: chainID})
	conn := dial(t, s)
	cases := []struct {
		name string
		md   []string
		code codes.Code
		msg  string
	}{
		{"missing chain", []string{"x-api-key", apiKey, "x-smart-contract-id", contract}, codes.InvalidArgument, "missing chain ID"},
		{"wrong chain", []string{"x-api-key", apiKey, "x-smart-contract-id", contract, "x-chain-id", "other"}, codes.InvalidArgument,
			`chain ID mismatch: the stream's x-chain-id is "other", this chain is "` + chainID + `"`},
		{"wrong key", []string{"x-api-key", "nope", "x-smart-contract-id", contract, "x-chain-id", chainID}, codes.Unauthenticated, ""},
		{"no key", []string{"x-smart-contract-id", contract, "x-chain-id", chainID}, codes.Unauthenticated, ""},
		{"unknown contract", []string{"x-api-key", apiKey, "x-smart-contract-id", "sc-404", "x-chain-id", chainID}, codes.PermissionDenied, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			expectStatus(t, open(t, conn, tc.md...), tc.code, tc.msg)
		})
	}
	if r := s.Report(); r.StreamsRejected != len(cases) || r.StreamsAccepted != 0 {
		t.Fatalf("rejected %d accepted %d, want %d and 0", r.StreamsRejected, r.StreamsAccepted, len(cases))
	}
}

// TestDefaultChainRefusesOthers: a simulator on DefaultChainID, the
// demo's chain, refuses a client naming another chain and serves one
// naming it.
func TestDefaultChainRefusesOthers(t *testing.T) {
	if primesim.DefaultChainID != "demo-chain" {
		t.Fatalf("DefaultChainID %q is not the chain the demo's gateway names", primesim.DefaultChainID)
	}
	s := newServer(t, primesim.Config{ChainID: primesim.DefaultChainID})
	conn := dial(t, s)
	expectStatus(t, open(t, conn, "x-api-key", apiKey, "x-smart-contract-id", contract, "x-chain-id", chainID),
		codes.InvalidArgument, `chain ID mismatch: the stream's x-chain-id is "`+chainID+`", this chain is "demo-chain"`)
	tx := submitN(t, s, contract, 1)
	st := open(t, conn, "x-api-key", apiKey, "x-smart-contract-id", contract, "x-chain-id", primesim.DefaultChainID)
	if got := ids(recvN(t, st, 1)); !equal(got, tx) {
		t.Fatalf("got %v, want %v", got, tx)
	}
}

func TestBacklogDeliveredOldestFirst(t *testing.T) {
	s := newServer(t, primesim.Config{})
	want := submitN(t, s, contract, 50)
	other := submitN(t, s, "sc-2", 3) // must not leak onto sc-1's stream

	st := openOK(t, dial(t, s), contract)
	got := ids(recvN(t, st, len(want)))
	if !equal(got, want) {
		t.Fatalf("delivery order\n got %v\nwant %v", got, want)
	}
	// Live submissions follow the backlog.
	more := submitN(t, s, contract, 2)
	if got := ids(recvN(t, st, 2)); !equal(got, more) {
		t.Fatalf("live delivery got %v, want %v", got, more)
	}
	for _, id := range append(want, more...) {
		answer(t, st, id)
	}
	waitAnswered(t, s, len(want)+len(more))

	r := s.Report()
	if r.Submitted != 55 || r.Delivered != 52 || r.Answered != 52 || r.Missing != 3 || r.Redelivered != 0 {
		t.Fatalf("unexpected report:\n%v", r)
	}
	if r.OK() {
		t.Fatalf("report OK with sc-2 transactions unanswered")
	}
	if !equal(r.MissingIDs, other) {
		t.Fatalf("missing IDs %v, want %v", r.MissingIDs, other)
	}
	if resp, ok := s.Answer(contract, want[0]); !ok || resp.GetResultJson() != `{"ok":true}` {
		t.Fatalf("Answer(%s) = %v, %v", want[0], resp, ok)
	}
}

func TestUnansweredRedeliveredAfterReconnect(t *testing.T) {
	s := newServer(t, primesim.Config{})
	all := submitN(t, s, contract, 6)
	conn := dial(t, s)

	first := openOK(t, conn, contract)
	if got := ids(recvN(t, first, 6)); !equal(got, all) {
		t.Fatalf("first stream got %v, want %v", got, all)
	}
	for _, id := range all[:3] {
		answer(t, first, id)
	}
	waitAnswered(t, s, 3)
	first.cancel() // client goes away with three transactions unanswered

	second := openOK(t, conn, contract)
	if got := ids(recvN(t, second, 3)); !equal(got, all[3:]) {
		t.Fatalf("redelivered %v, want %v", got, all[3:])
	}
	// A marker submitted now must be the very next message: answered
	// transactions are not redelivered.
	marker := submitN(t, s, contract, 1)
	if got := ids(recvN(t, second, 1)); !equal(got, marker) {
		t.Fatalf("after redelivery got %v, want marker %v", got, marker)
	}
	for _, id := range append(all[3:], marker...) {
		answer(t, second, id)
	}
	waitAnswered(t, s, 7)

	r := s.Report()
	if !r.OK() || r.Submitted != 7 || r.Delivered != 10 || r.Redelivered != 3 || r.Answered != 7 || r.StreamsAccepted != 2 {
		t.Fatalf("unexpected report:\n%v", r)
	}
}

func TestReportCountsDuplicatesMissingUnexpected(t *testing.T) {
	s := newServer(t, primesim.Config{})
	all := submitN(t, s, contract, 3)
	st := openOK(t, dial(t, s), contract)
	recvN(t, st, 3)

	answer(t, st, all[0])
	answer(t, st, all[0])
	answer(t, st, all[0])
	answer(t, st, "never-submitted")
	// Responses on one stream are processed in order, so once this last
	// answer is counted, all of the above are too.
	if err := st.Send(&pb.SmartContractResponse{TransactionId: all[1], Error: "contract failed"}); err != nil {
		t.Fatal(err)
	}
	waitAnswered(t, s, 2)

	r := s.Report()
	if r.OK() {
		t.Fatalf("report OK despite violations:\n%v", r)
	}
	if r.Answered != 2 || r.AnsweredMoreThanOnce != 1 || r.DuplicateAnswers != 2 || r.Missing != 1 ||
		r.Unexpected != 1 || r.ErrorResponses != 1 || !equal(r.MissingIDs, all[2:]) {
		t.Fatalf("unexpected report:\n%v", r)
	}
	if r.LatencyP50 <= 0 || r.LatencyP99 < r.LatencyP50 || r.LatencyMax < r.LatencyP99 {
		t.Fatalf("latencies p50 %v p99 %v max %v", r.LatencyP50, r.LatencyP99, r.LatencyMax)
	}
	if out := r.String(); !strings.Contains(out, "FAILED") || !strings.Contains(out, all[2]) {
		t.Fatalf("String() lacks verdict or missing ID:\n%s", out)
	}
}

func TestSecondStreamReplacesFirst(t *testing.T) {
	s := newServer(t, primesim.Config{})
	conn := dial(t, s)
	tx := submitN(t, s, contract, 1)

	old := openOK(t, conn, contract)
	if got := ids(recvN(t, old, 1)); !equal(got, tx) {
		t.Fatalf("old stream got %v, want %v", got, tx)
	}
	newer := openOK(t, dial(t, s), contract) // e.g. a restarted gateway
	expectStatus(t, old, codes.Aborted, "replaced by a newer stream")

	if got := ids(recvN(t, newer, 1)); !equal(got, tx) {
		t.Fatalf("newer stream got %v, want redelivery of %v", got, tx)
	}
	answer(t, newer, tx[0])
	waitAnswered(t, s, 1)
	r := s.Report()
	if !r.OK() || r.StreamsReplaced != 1 || r.Redelivered != 1 {
		t.Fatalf("unexpected report:\n%v", r)
	}
	// The old stream's answer, had it come, would be counted as a surplus;
	// the newer stream keeps working.
	more := submitN(t, s, contract, 1)
	if got := ids(recvN(t, newer, 1)); !equal(got, more) {
		t.Fatalf("newer stream got %v, want %v", got, more)
	}
}

func TestCustomMethodPath(t *testing.T) {
	const path = "/acme.prime.Contracts/Stream"
	s := newServer(t, primesim.Config{MethodPath: path})
	conn := dial(t, s)
	tx := submitN(t, s, contract, 1)

	// The generated client uses the default path, which is not served.
	expectStatus(t, openOK(t, conn, contract), codes.Unimplemented, "")

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-api-key", apiKey, "x-smart-contract-id", contract, "x-chain-id", chainID)
	cs, err := conn.NewStream(ctx, &grpc.StreamDesc{StreamName: "Stream", ServerStreams: true, ClientStreams: true}, path)
	if err != nil {
		t.Fatal(err)
	}
	req := new(pb.SmartContractRequest)
	if err := cs.RecvMsg(req); err != nil || req.GetTransactionId() != tx[0] {
		t.Fatalf("RecvMsg = %v, %v; want %s", req, err, tx[0])
	}
	if err := cs.SendMsg(&pb.SmartContractResponse{TransactionId: tx[0]}); err != nil {
		t.Fatal(err)
	}
	waitAnswered(t, s, 1)
	if err := cs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	// Half-closing ends the stream cleanly.
	if err := cs.RecvMsg(req); !errors.Is(err, io.EOF) {
		t.Fatalf("after CloseSend: %v, want EOF", err)
	}
}

func TestSubmitErrors(t *testing.T) {
	s := newServer(t, primesim.Config{MaxBacklog: 2})
	submitN(t, s, contract, 2)
	if _, err := s.Submit(contract, primesim.Transaction{}); !errors.Is(err, primesim.ErrBacklogFull) {
		t.Fatalf("third Submit: %v, want ErrBacklogFull", err)
	}
	if _, err := s.Submit("sc-2", primesim.Transaction{ID: "x"}); err != nil {
		t.Fatalf("other contract has its own backlog: %v", err)
	}
	if _, err := s.Submit("sc-2", primesim.Transaction{ID: "x"}); !errors.Is(err, primesim.ErrDuplicateID) {
		t.Fatalf("duplicate: %v", err)
	}
	if _, err := s.Submit("nope", primesim.Transaction{}); !errors.Is(err, primesim.ErrUnknownContract) {
		t.Fatalf("unknown contract: %v", err)
	}
	_ = s.Close()
	if _, err := s.Submit("sc-2", primesim.Transaction{}); !errors.Is(err, primesim.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestGenerate(t *testing.T) {
	s := newServer(t, primesim.Config{ChainID: chainID})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	start := time.Now()
	if err := s.Generate(ctx, contract, 5, 100); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 40*time.Millisecond {
		t.Fatalf("5 transactions at 100/s took %v", el)
	}
	if err := s.Generate(ctx, contract, 45, 0); err != nil {
		t.Fatal(err)
	}

	st := openOK(t, dial(t, s), contract)
	for i, req := range recvN(t, st, 50) {
		var tx struct {
			Version string `json:"version"`
			Header  struct {
				TxnType   string `json:"txn_type"`
				DcID      string `json:"dc_id"`
				TxnID     string `json:"txn_id"`
				Timestamp string `json:"timestamp"`
			} `json:"header"`
			Payload map[string]any `json:"payload"`
		}
		if err := json.Unmarshal([]byte(req.GetTransactionJson()), &tx); err != nil {
			t.Fatalf("transaction %d: %v", i, err)
		}
		if tx.Version != "1" || tx.Header.TxnID != req.GetTransactionId() || tx.Header.DcID != chainID ||
			tx.Header.TxnType != contract || tx.Header.Timestamp == "" || tx.Payload == nil {
			t.Fatalf("transaction %d malformed: %s", i, req.GetTransactionJson())
		}
		if req.GetEnvVars()["SMART_CONTRACT_ID"] != contract || req.GetSecrets()["secret-key"] == "" {
			t.Fatalf("transaction %d env %v secrets %v", i, req.GetEnvVars(), req.GetSecrets())
		}
		answer(t, st, req.GetTransactionId())
	}
	waitAnswered(t, s, 50)
	if r := s.Report(); !r.OK() {
		t.Fatalf("report not OK:\n%v", r)
	}

	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	if err := s.Generate(cctx, contract, 1, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("Generate on cancelled ctx: %v", err)
	}
}

func TestWaitAnsweredHonoursContext(t *testing.T) {
	s := newServer(t, primesim.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.WaitAnswered(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitAnswered: %v, want deadline exceeded", err)
	}
}

func TestCloseEndsStreams(t *testing.T) {
	s := newServer(t, primesim.Config{})
	st := openOK(t, dial(t, s), contract)
	submitN(t, s, contract, 1)
	recvN(t, st, 1) // the stream is attached
	done := make(chan struct{})
	go func() { _ = s.Close(); close(done) }()
	expectStatus(t, st, codes.Unavailable, "")
	select {
	case <-done:
	case <-time.After(testTimeout):
		t.Fatal("Close did not return")
	}
}

// TestKeepalive10sPingsAccepted keeps an idle stream open while the client
// pings every 10 s (the template's setting); an over-strict enforcement
// policy would answer with GOAWAY "too_many_pings" and kill the stream.
// grpc-go tolerates two early pings and the first ping never counts, so the
// idle period must cover four pings for the test to be able to fail.
func TestKeepalive10sPingsAccepted(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 45 s")
	}
	t.Parallel()
	s := newServer(t, primesim.Config{})
	conn := dial(t, s, grpc.WithKeepaliveParams(keepalive.ClientParameters{
		Time: 10 * time.Second, Timeout: 3 * time.Second, PermitWithoutStream: true,
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-api-key", apiKey, "x-smart-contract-id", contract, "x-chain-id", chainID)
	st, err := pb.NewSmartContractServiceClient(conn).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(45 * time.Second) // four client pings
	tx := submitN(t, s, contract, 1)
	req, err := st.Recv()
	if err != nil || req.GetTransactionId() != tx[0] {
		t.Fatalf("after idle period: %v, %v", req, err)
	}
	if r := s.Report(); r.StreamsAccepted != 1 || r.StreamsReplaced != 0 {
		t.Fatalf("stream was re-established during idle period:\n%v", r)
	}
}

// TestSilentConnectionClosed: a client that connects and never sends the
// HTTP/2 preface is disconnected after the server's handshake timeout
// (10 s), not grpc-go's default of two minutes.
func TestSilentConnectionClosed(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 10 s")
	}
	t.Parallel()
	s := newServer(t, primesim.Config{})
	c, err := net.DialTimeout("tcp", s.Addr().String(), testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.SetReadDeadline(start.Add(30 * time.Second))
	_, err = io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("silent connection still open after %v", time.Since(start))
	}
	t.Logf("silent connection closed after %v", time.Since(start).Round(time.Millisecond))
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("silent connection closed after %v, want about 10 s", d)
	}
}

// TestPauseAndRestart: a paused server ends its streams, keeps its
// backlog (including transactions submitted while paused) and, started
// again on the same address, delivers every unanswered one.
func TestPauseAndRestart(t *testing.T) {
	s := newServer(t, primesim.Config{})
	addr := s.Addr().String()
	conn := dial(t, s)
	first := openOK(t, conn, contract)
	all := submitN(t, s, contract, 4)
	recvN(t, first, 4)
	answer(t, first, all[0])
	waitAnswered(t, s, 1)

	s.Pause()
	expectStatus(t, first, codes.Unavailable, "restarting")
	all = append(all, submitN(t, s, contract, 2)...)
	if err := s.Start(addr); err != nil {
		t.Fatal(err)
	}
	second := openOK(t, dial(t, s), contract)
	if got := ids(recvN(t, second, 5)); !equal(got, all[1:]) {
		t.Fatalf("after restart got %v, want %v", got, all[1:])
	}
	for _, id := range all[1:] {
		answer(t, second, id)
	}
	waitAnswered(t, s, 6)
	if r := s.Report(); !r.OK() || r.StreamsAccepted != 2 || r.Redelivered != 3 {
		t.Fatalf("unexpected report:\n%v", r)
	}
}
