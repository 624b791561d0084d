package grid

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/internal/streamtest"
	"github.com/gridmesh/gridmesh/mux"
)

// TestStreamServerOutCongestion: a handler pushes 100 messages to a caller
// that is not reading; 100 single requests on the same connection succeed
// meanwhile; then all 100 messages arrive, in order.
func TestStreamServerOutCongestion(t *testing.T) {
	d, a, _ := pair(t, nil)
	pushed := make(chan int, 1)
	streamHandler(t, hsPush, handlers.StreamHandler{OutCapacity: 1, Handle: func(ctx context.Context, _ []byte, _ <-chan []byte, out chan<- []byte) error {
		for i := range 100 {
			select {
			case out <- fmt.Appendf(nil, "%03d", i):
			case <-ctx.Done():
				return ctx.Err()
			}
			if i == 0 {
				pushed <- i // the next send blocks on credit
			}
		}
		return nil
	}}, a)
	ctx := testCtx(t)
	st, err := d.m.Connection(a.name).NewStream(ctx, hsPush, nil)
	must(t, err)
	<-pushed
	for i := range 100 {
		must(t, d.call(ctx, a.name, fmt.Sprint(i)))
	}
	for i := range 100 {
		if r := recvResp(t, st); r.Err != nil || string(r.Msg) != fmt.Sprintf("%03d", i) {
			t.Fatalf("message %d: %q %v", i, r.Msg, r.Err)
		}
	}
	if rest := drain(t, st); len(rest) != 0 {
		t.Fatalf("extra: %+v", rest)
	}
	noStreamState(t, d, a)
}

// TestStreamServerInCongestion: the handler does not read while the caller
// fills its input; 100 single requests on the same connection succeed
// meanwhile; then the handler gets all 100 messages, in order.
func TestStreamServerInCongestion(t *testing.T) {
	d, a, _ := pair(t, nil)
	release := make(chan struct{})
	received := make(chan []string, 1)
	streamHandler(t, hsBlock, handlers.StreamHandler{InCapacity: 100, Handle: func(ctx context.Context, _ []byte, in <-chan []byte, _ chan<- []byte) error {
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		var got []string
		for m := range in {
			got = append(got, string(m))
		}
		received <- got
		return nil
	}}, a)
	ctx := testCtx(t)
	st, err := d.m.Connection(a.name).NewStream(ctx, hsBlock, nil)
	must(t, err)
	for i := range 100 {
		must(t, st.Send(ctx, fmt.Appendf(nil, "%d", i)))
	}
	sctx, scancel := context.WithTimeout(ctx, 20*time.Millisecond)
	if err := st.Send(sctx, []byte("one too many")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("send beyond the handler's input capacity: %v", err)
	}
	scancel()
	for i := range 100 {
		must(t, d.call(ctx, a.name, fmt.Sprint(i)))
	}
	close(release)
	st.CloseSend()
	if rest := drain(t, st); len(rest) != 0 {
		t.Fatalf("extra: %+v", rest)
	}
	got := <-received
	if len(got) != 100 || got[0] != "0" || got[99] != "99" {
		t.Fatalf("handler received %d messages: %v", len(got), got)
	}
	noStreamState(t, d, a)
}

// TestStreamLimit: Options.Mux.MaxStreams bounds the streams open on a
// connection; one more is refused with ErrTooManyStreams, and the limit
// frees up as streams end.
func TestStreamLimit(t *testing.T) {
	d, a, _ := pair(t, func(o *Options) { o.Mux.MaxStreams = 2 })
	b := newBlocker(3)
	streamHandler(t, hsBlock, handlers.StreamHandler{Handle: b.handle}, a)
	c := d.m.Connection(a.name)
	ctx, cancel := context.WithCancel(testCtx(t))
	var streams []*mux.Stream
	for range 2 {
		st, err := c.NewStream(ctx, hsBlock, nil)
		must(t, err)
		streams = append(streams, st)
	}
	_, err := c.NewStream(ctx, hsBlock, nil)
	if !errors.Is(err, mux.ErrTooManyStreams) {
		t.Fatalf("third stream: %v", err)
	}
	t.Logf("third stream refused: %v", err)
	streams[0].Cancel()
	endsWith(t, "cancelled stream", streams[0], context.Canceled)
	waitFor(t, "a free stream slot", func() bool { return c.Stats().StreamsOut == 1 })
	st, err := c.NewStream(ctx, hsBlock, nil)
	must(t, err)
	streams[0] = st
	cancel()
	for _, st := range streams {
		endsWith(t, "cancelled stream", st, context.Canceled)
	}
	b.waitEnded(t, 3, context.Canceled)
	noStreamState(t, d, a)
}

// TestStreamBigMessage echoes a 16 MiB message on a stream while single
// requests keep flowing on the same connection, and logs the worst
// single-request latency seen (chunks of the big message interleave with
// the small frames).
func TestStreamBigMessage(t *testing.T) {
	// Pings queue behind the big message's bytes in the sockets' buffers
	// too, and on a loaded machine under -race a pong can take longer than
	// the tests' PingTimeout: the keep-alive must take the bulk data
	// arriving as proof of life and keep the connection.
	d, a, _ := pair(t, nil)
	streamHandler(t, hsEcho, handlers.StreamHandler{Handle: streamtest.Echo, InCapacity: 1, OutCapacity: 1}, a)
	c := d.m.Connection(a.name)
	ctx := testCtx(t)
	st, err := c.NewStream(ctx, hsEcho, nil)
	must(t, err)
	big := make([]byte, 16<<20)
	rand.Read(big)

	stop := make(chan struct{})
	done := make(chan struct{})
	var lat []time.Duration
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			if err := d.call(ctx, a.name, "small"); err != nil {
				t.Error(err)
				return
			}
			lat = append(lat, time.Since(start))
		}
	}()
	start := time.Now()
	must(t, st.Send(ctx, big))
	r := recvResp(t, st)
	echo := time.Since(start)
	close(stop)
	<-done
	if r.Err != nil || !bytes.Equal(r.Msg, big) {
		t.Fatalf("big echo: %d bytes, %v", len(r.Msg), r.Err)
	}
	t.Logf("16 MiB stream echo over the grid took %v; %d single requests meanwhile, latency %s", echo, len(lat), streamtest.Latencies(lat))
	if len(lat) == 0 {
		t.Error("no single request completed while the big message was in flight")
	}
	st.CloseSend()
	drain(t, st)
	noStreamState(t, d, a)
	if n := c.Stats().Connects; n != 1 {
		t.Errorf("the connection was re-established %d times during the transfer: a late pong behind bulk data was taken for a dead peer", n-1)
	}
}
