package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gridmesh/gridmesh/gateway"
	"github.com/gridmesh/gridmesh/gateway/contract"
	"github.com/gridmesh/gridmesh/gateway/primesim"
	"github.com/gridmesh/gridmesh/gateway/wire"
	"github.com/gridmesh/gridmesh/internal/testcluster"
	"github.com/gridmesh/gridmesh/internal/testutil"
	pb "github.com/gridmesh/gridmesh/proto"
)

// localGateway is a gateway running fn in process (NewLocal) against the
// Prime at pc, stopped at the end of the test.
type localGateway struct {
	gw     *gateway.Gateway
	j      *gateway.Journal
	log    *testutil.LogBuffer
	cancel context.CancelFunc
	done   chan error
}

// startLocal opens a journal and runs a gateway with opts, filling in the
// journal, a logger and a 5 s drain; j, when not nil, is run on the journal
// first.
func startLocal(tb testing.TB, opts gateway.Options, j func(*gateway.Journal)) *localGateway {
	tb.Helper()
	journal, err := gateway.OpenJournal(tb.TempDir()+"/j.db", gateway.JournalOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = journal.Close() })
	if j != nil {
		j(journal)
	}
	l := &localGateway{j: journal, log: new(testutil.LogBuffer), done: make(chan error, 1)}
	opts.Journal, opts.Logger = journal, l.log.Logger()
	if opts.DrainTimeout == 0 {
		opts.DrainTimeout = 5 * time.Second
	}
	l.gw, err = gateway.New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go func() { l.done <- l.gw.Run(ctx) }()
	tb.Cleanup(func() { _ = l.stop(tb) })
	return l
}

// stop shuts the gateway down and returns Run's error; later calls return
// nil.
func (l *localGateway) stop(tb testing.TB) error {
	tb.Helper()
	l.cancel()
	select {
	case err, ok := <-l.done:
		if ok {
			close(l.done)
		}
		return err
	case <-time.After(testutil.Timeout):
		l.gw.Abort()
		tb.Fatal("gateway Run did not return")
		return nil
	}
}

// rawPrime serves handle as every stream of a gRPC server on loopback: a
// Prime doing what primesim does not. The server stops at the end of the
// test.
func rawPrime(tb testing.TB, handle func(n int, st grpc.ServerStream) error) gateway.PrimeConfig {
	tb.Helper()
	var streams atomic.Int64
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, st grpc.ServerStream) error {
		return handle(int(streams.Add(1)), st)
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(srv.Stop)
	return gateway.PrimeConfig{
		ServerAddress: ln.Addr().String(), ChainID: testcluster.ChainID, SmartContractID: testcluster.ContractID, APIKey: testcluster.APIKey,
		ReconnectDelay: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	}
}

// TestResultTooLarge: a result larger than Prime takes (a default gRPC
// server refuses messages over 4 MiB and ends the stream, then delivers
// the transaction again) is neither journaled nor sent; Prime is answered
// with an error for it, the stream stays up and the other transactions
// are answered. So is a transaction whose oversized result an older
// gateway journaled.
func TestResultTooLarge(t *testing.T) {
	const n = 20
	prime := testcluster.StartPrime(t, primesim.Config{})
	big := `"` + strings.Repeat("x", 5<<20) + `"`
	fn := func(ctx context.Context, txJSON string, env, secrets map[string]string) (contract.Output, error) {
		if strings.Contains(txJSON, `"seq":0,`) {
			return contract.Output{ResultJSON: big, OutputToChain: true, Logs: "made a big one"}, nil
		}
		return testcluster.Echo(ctx, txJSON, env, secrets)
	}
	old, err := prime.NewTransaction(testcluster.ContractID, n, n+1)
	if err != nil {
		t.Fatal(err)
	}
	l := startLocal(t, gateway.Options{Prime: testcluster.PrimeConfig(prime), Runner: gateway.NewLocal(fn, 4)}, func(j *gateway.Journal) {
		if err := j.Put(&wire.TxResult{ID: old.ID, ResultJSON: big}); err != nil {
			t.Fatal(err)
		}
	})
	ids := testcluster.Submit(t, prime, n)
	if _, err := prime.Submit(testcluster.ContractID, old); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Timeout)
	defer cancel()
	if err := prime.WaitAnswered(ctx, n+1); err != nil {
		t.Fatalf("%v\n%v\ngateway %+v\n%s", err, prime.Report(), l.gw.Stats(), l.log.Tail(2000))
	}
	if err := l.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	testcluster.CheckReport(t, prime, n+1)
	for _, id := range []string{ids[0], old.ID} {
		resp, _ := prime.Answer(testcluster.ContractID, id)
		if !strings.Contains(resp.GetError(), "result too large") || resp.GetResultJson() != "" || resp.GetOutputToChain() {
			t.Fatalf("answer for %s: error %q, %d bytes of result, want an error answer", id, resp.GetError(), len(resp.GetResultJson()))
		}
	}
	if resp, _ := prime.Answer(testcluster.ContractID, ids[1]); resp.GetError() != "" || !strings.Contains(resp.GetResultJson(), `"seq":1,`) {
		t.Fatalf("answer for a small result: %v", resp)
	}
	if st := l.gw.Stats(); st.Streams != 1 || st.SendErrors != 0 || st.TooLarge != 2 || st.Failed != 2 || st.Sent != n+1 || st.FromJournal != 1 {
		t.Fatalf("want 2 too large and every answer sent on one stream: %+v", st)
	}
	res, found, err := l.j.Get(ids[0])
	if err != nil || !found || res.ResultJSON != "" || !strings.Contains(res.Error, "result too large") {
		t.Fatalf("journal holds %d bytes of result, error %q (found %v, %v), want the error answer", len(res.ResultJSON), res.Error, found, err)
	}
	if !strings.Contains(l.log.String(), "result too large") {
		t.Fatalf("not logged:\n%s", l.log.Tail(2000))
	}
}

// TestMaxResultBytes: the bound applies to the response as encoded, and
// is checked.
func TestMaxResultBytes(t *testing.T) {
	prime := testcluster.StartPrime(t, primesim.Config{})
	if _, err := gateway.New(gateway.Options{Prime: testcluster.PrimeConfig(prime), Runner: gateway.NewLocal(testcluster.Echo, 1),
		Journal: new(gateway.Journal), MaxResultBytes: 100}); !errors.Is(err, gateway.ErrConfig) || !strings.Contains(err.Error(), "MaxResultBytes") {
		t.Fatalf("New with MaxResultBytes 100: %v", err)
	}
	const limit = 2000
	fn := func(_ context.Context, txJSON string, _, _ map[string]string) (contract.Output, error) {
		size := 1000 // a result, and the response around it, under max
		if strings.Contains(txJSON, `"seq":1,`) {
			size = limit // the result alone is the limit: the response is over
		}
		return contract.Output{ResultJSON: strings.Repeat("x", size)}, nil
	}
	l := startLocal(t, gateway.Options{Prime: testcluster.PrimeConfig(prime), Runner: gateway.NewLocal(fn, 2), MaxResultBytes: limit}, nil)
	ids := testcluster.Submit(t, prime, 2)
	testcluster.WaitAnswered(t, prime, 2, nil)
	if err := l.stop(t); err != nil {
		t.Fatal(err)
	}
	if resp, _ := prime.Answer(testcluster.ContractID, ids[0]); resp.GetError() != "" || len(resp.GetResultJson()) != 1000 {
		t.Fatalf("answer under the bound: error %q, %d bytes of result", resp.GetError(), len(resp.GetResultJson()))
	}
	if resp, _ := prime.Answer(testcluster.ContractID, ids[1]); !strings.Contains(resp.GetError(), "max_result_bytes is 2000") || resp.GetResultJson() != "" {
		t.Fatalf("answer over the bound: error %q, %d bytes of result", resp.GetError(), len(resp.GetResultJson()))
	}
}

// TestSendFailsAsStreamEnds: Prime ends the stream (a status error) while
// the gateway sends a result. The stream's end is reported with Prime's
// status, not the Send's io.EOF, and the result stays pending: it is sent
// on the next stream, and Prime's redelivery meanwhile is neither run
// again nor answered from the journal.
func TestSendFailsAsStreamEnds(t *testing.T) {
	// sending is closed when the gateway's sender is in its first Send;
	// that Send goes through once the stream ended under it.
	intercept := func(sending chan struct{}) grpc.DialOption {
		var first atomic.Bool
		return grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			cs, err := streamer(ctx, desc, cc, method, opts...)
			if err != nil || !first.CompareAndSwap(false, true) {
				return cs, err
			}
			return endingStream{cs, sending}, nil
		})
	}
	// prime delivers tx-1 on every stream; on the first it ends the stream
	// once the gateway sends, on the others it reads the answers.
	prime := func(t *testing.T, sending chan struct{}, answers chan<- *pb.SmartContractResponse) gateway.PrimeConfig {
		return rawPrime(t, func(n int, st grpc.ServerStream) error {
			if err := st.SendMsg(&pb.SmartContractRequest{TransactionId: "tx-1", TransactionJson: `{"payload":1}`}); err != nil {
				return err
			}
			if n == 1 {
				select {
				case <-sending:
				case <-st.Context().Done():
				}
				return status.Error(codes.Aborted, "prime restarting")
			}
			for {
				resp := new(pb.SmartContractResponse)
				if err := st.RecvMsg(resp); err != nil {
					if errors.Is(err, io.EOF) {
						return nil
					}
					return err
				}
				answers <- resp
			}
		})
	}
	streamEnd := func(log string) string {
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, "Prime stream ended") {
				return line
			}
		}
		return ""
	}

	t.Run("result sent on the next stream", func(t *testing.T) {
		sending, answers := make(chan struct{}), make(chan *pb.SmartContractResponse, 10)
		pc := prime(t, sending, answers)
		pc.DialOptions = []grpc.DialOption{intercept(sending)}
		runs := new(atomic.Int64)
		fn := func(ctx context.Context, txJSON string, env, secrets map[string]string) (contract.Output, error) {
			runs.Add(1)
			return testcluster.Echo(ctx, txJSON, env, secrets)
		}
		l := startLocal(t, gateway.Options{Prime: pc, Runner: gateway.NewLocal(fn, 1)}, nil)
		select {
		case resp := <-answers:
			if resp.GetTransactionId() != "tx-1" || resp.GetError() != "" || !strings.Contains(resp.GetResultJson(), `"payload":1`) {
				t.Fatalf("answer %v", resp)
			}
		case <-time.After(testutil.Timeout):
			t.Fatalf("no answer on the second stream; gateway %+v\n%s", l.gw.Stats(), l.log.Tail(3000))
		}
		testutil.WaitUntil(t, "the redelivery", func() bool { st := l.gw.Stats(); return st.Duplicates+st.FromJournal+st.Started > 1 })
		if err := l.stop(t); err != nil {
			t.Fatalf("Run: %v", err)
		}
		st := l.gw.Stats()
		if runs.Load() != 1 || st.Started != 1 || st.FromJournal != 0 || st.Duplicates != 1 || st.Sent != 1 || st.SendErrors != 1 || st.Streams != 2 {
			t.Fatalf("want the result kept for the second stream: ran %d times, %+v", runs.Load(), st)
		}
		if line := streamEnd(l.log.String()); !strings.Contains(line, "code = Aborted") || !strings.Contains(line, "prime restarting") {
			t.Fatalf("stream end logged without Prime's status: %q", line)
		}
	})

	t.Run("ErrMaxReconnects carries Prime's status", func(t *testing.T) {
		sending := make(chan struct{})
		pc := prime(t, sending, nil)
		pc.DialOptions = []grpc.DialOption{intercept(sending)}
		pc.MaxReconnectAttempts = 1
		l := startLocal(t, gateway.Options{Prime: pc, Runner: gateway.NewLocal(testcluster.Echo, 1)}, nil)
		var err error
		select {
		case err = <-l.done:
			close(l.done)
		case <-time.After(testutil.Timeout):
			t.Fatal("Run did not give up")
		}
		if !errors.Is(err, gateway.ErrMaxReconnects) || status.Code(err) != codes.Aborted || !strings.Contains(err.Error(), "prime restarting") {
			t.Fatalf("Run: %v, want ErrMaxReconnects with Prime's Aborted status", err)
		}
	})
}

// endingStream holds its first SendMsg until the stream has ended (Prime
// ended it once sending was closed), so that the Send fails as a Send on
// a stream Prime just ended does.
type endingStream struct {
	grpc.ClientStream
	sending chan struct{}
}

func (s endingStream) SendMsg(m any) error {
	select {
	case <-s.sending:
	default:
		close(s.sending)
		<-s.Context().Done()
	}
	return s.ClientStream.SendMsg(m)
}

// TestPrimeNotReading: Prime keeps delivering but reads no response. Once
// 1024 results wait to be sent, the gateway stops reading from Prime, so
// that gRPC flow control holds the backlog at Prime, instead of running
// transaction after transaction and piling their results up in memory.
// When Prime reads again, everything is answered.
func TestPrimeNotReading(t *testing.T) {
	const (
		n        = 2000
		capacity = 4
		// Results waiting (1024), one per slot finishing meanwhile, those
		// running, the one in the sender's Send and the one received.
		bound = 1024 + 2*capacity + 2
	)
	read := make(chan struct{})     // closed: Prime reads the responses
	answered := make(chan struct{}) // closed when Prime has every answer
	pc := rawPrime(t, func(_ int, st grpc.ServerStream) error {
		sent := make(chan error, 1)
		go func() {
			for i := range n {
				req := &pb.SmartContractRequest{TransactionId: fmt.Sprintf("tx-%04d", i), TransactionJson: "{}"}
				if err := st.SendMsg(req); err != nil {
					sent <- err
					return
				}
			}
			sent <- nil
		}()
		select {
		case <-read:
		case <-st.Context().Done():
			<-sent
			return st.Context().Err()
		}
		seen := make(map[string]bool)
		for {
			resp := new(pb.SmartContractResponse)
			if err := st.RecvMsg(resp); err != nil {
				<-sent
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
			if !seen[resp.GetTransactionId()] {
				seen[resp.GetTransactionId()] = true
				if len(seen) == n {
					close(answered)
				}
			}
		}
	})
	res := `"` + strings.Repeat("r", 8<<10) + `"`
	fn := func(context.Context, string, map[string]string, map[string]string) (contract.Output, error) {
		return contract.Output{ResultJSON: res}, nil
	}
	l := startLocal(t, gateway.Options{Prime: pc, Runner: gateway.NewLocal(fn, capacity)}, nil)

	bounded := func() gateway.Stats {
		st := l.gw.Stats()
		if st.InFlight > bound || st.Received > st.Sent+bound {
			t.Fatalf("%d results held in memory, %d received and %d sent; want at most %d held", st.InFlight, st.Received, st.Sent, bound)
		}
		return st
	}
	testutil.WaitUntil(t, "the gateway to stop reading from Prime", func() bool { return bounded().Throttled > 0 })
	// The sender may still take a few results, until gRPC flow control
	// holds it; then nothing moves, and the bound holds all along.
	var last gateway.Stats
	deadline := time.Now().Add(testutil.Timeout)
	for still := 0; still < 20; {
		if time.Now().After(deadline) {
			t.Fatalf("the gateway kept reading or sending: %+v", last)
		}
		time.Sleep(20 * time.Millisecond)
		st := bounded()
		if st.Received == last.Received && st.Sent == last.Sent {
			still++
		} else {
			still = 0
		}
		last = st
	}
	if last.Received >= n {
		t.Fatalf("the gateway read everything: %+v", last)
	}

	close(read)
	select {
	case <-answered:
	case <-time.After(testutil.Timeout):
		t.Fatalf("Prime did not get every answer: %+v", bounded())
	}
	if err := l.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if st := l.gw.Stats(); st.Started != n || st.Sent != n || st.Streams != 1 || st.InFlight != 0 {
		t.Fatalf("stats %+v, want %d run and sent on one stream", st, n)
	}
}
