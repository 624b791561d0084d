package streamtest

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/internal/latency"
	"github.com/gridmesh/gridmesh/mux"
)

// Echo is a stream handler in the Handle form: it answers every input
// message with the same message.
func Echo(ctx context.Context, _ []byte, in <-chan []byte, out chan<- []byte) error {
	for msg := range in {
		select {
		case out <- msg:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// ServeEcho is Echo in the Serve form; it recycles each message once Send
// has copied it.
func ServeEcho(ctx context.Context, _ []byte, st handlers.ServerStream) error {
	for {
		msg, err := st.Recv(ctx)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := st.Send(ctx, msg); err != nil {
			return err
		}
		mux.Recycle(msg)
	}
}

// Next returns st's next Response, failing tb if Responses closes first
// or nothing comes within timeout.
func Next(tb testing.TB, st *mux.Stream, timeout time.Duration) mux.Response {
	tb.Helper()
	select {
	case r, ok := <-st.Responses:
		if !ok {
			tb.Fatal("Responses closed")
		}
		return r
	case <-time.After(timeout):
		tb.Fatal("no response")
	}
	return mux.Response{}
}

// Drain reads st's Responses until it closes and returns what it read,
// failing tb if a read waits longer than timeout. If Responses closed
// without the stream's error (a stream cancelled while nobody was
// receiving from its unbuffered Responses), the error Recv reports is
// added as the last Response, so that what Drain returns ends the way the
// stream did.
func Drain(tb testing.TB, st *mux.Stream, timeout time.Duration) []mux.Response {
	tb.Helper()
	var got []mux.Response
	for {
		select {
		case r, ok := <-st.Responses:
			if !ok {
				if len(got) == 0 || got[len(got)-1].Err == nil {
					if _, err := st.Recv(); err != io.EOF {
						got = append(got, mux.Response{Err: err})
					}
				}
				return got
			}
			got = append(got, r)
		case <-time.After(timeout):
			tb.Fatal("Responses not closed")
		}
	}
}

// Latencies summarises latencies: median, 90th percentile, worst, as
// nearest-rank percentiles (package latency). lat is not modified.
func Latencies(lat []time.Duration) string {
	if len(lat) == 0 {
		return "none"
	}
	p := latency.Percentiles(lat, 50, 90, 100)
	return fmt.Sprintf("median %v, p90 %v, worst %v", p[0], p[1], p[2])
}
