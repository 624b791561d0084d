package mux

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/internal/defaults"
)

// Config holds a Session's limits. The zero value is usable: every field's
// default is given beside it and applied when the field is zero.
type Config struct {
	// MaxMessageSize is the largest request or response payload this side
	// accepts, and the largest it sends (it also respects the peer's).
	// Default 16 MiB; at most 1 GiB.
	MaxMessageSize int
	// MaxInFlight bounds the requests this side has sent and not yet seen
	// answered. A request over the bound waits (respecting its context).
	// The peer's MaxConcurrent lowers it further. Default 16384.
	MaxInFlight int
	// MaxConcurrent bounds the handlers this side runs at once for its
	// peer; it is announced in the hello so a conforming peer never exceeds
	// it. Default 4096.
	MaxConcurrent int
	// MaxStreams bounds the streams open at once on the session in each
	// direction: the ones this side opened (also bounded by the peer's
	// MaxStreams) and the ones it serves. One more is refused with
	// ErrTooManyStreams. Default 16384.
	MaxStreams int
	// MaxStreamBytes bounds the bytes of stream messages this side holds
	// for the consumers of its streams (the handlers' input, the callers'
	// Responses), including messages still arriving in chunks, summed over
	// the session. Each stream has a reserve of its own that does not
	// count: MaxStreamBytes / (2 × MaxStreams), within 4..64 KiB; what a
	// stream holds beyond its reserve counts against this bound. A message
	// counts as its length + 128 bytes from its arrival until its consumer
	// takes it. The bound is announced in the hello and a conforming
	// peer's senders wait for room rather than exceed it (Send, and a
	// handler's Send, wait; so does a handler's end until its caller
	// holds no more than the reserve), so a stream whose reader stalls
	// stops only its own sender until the stalled streams hold
	// MaxStreamBytes; then the other streams' messages that do not fit
	// their reserves wait too. A peer that exceeds it breaks the protocol.
	// Default max(64 MiB, 2 × MaxMessageSize); at least MaxMessageSize +
	// 128.
	MaxStreamBytes int64
	// MaxRequestBytes bounds the bytes this side holds for the peer's
	// requests of more than 64 KiB (which come in chunks) and for the
	// initial payloads of the streams it serves, from their first chunk
	// until their handler returns; a payload counts as its length + 128
	// bytes. Requests in one frame are bounded by MaxConcurrent instead
	// (64 KiB each). Announced in the hello: a conforming peer waits
	// (respecting its context) rather than exceed it, so exceeding it is a
	// protocol error. Default max(64 MiB, 2 × MaxMessageSize); at least
	// MaxMessageSize + 128.
	MaxRequestBytes int64
	// MaxResponseBytes bounds the bytes of responses to this side's
	// requests that are still arriving in chunks (responses of more than
	// 64 KiB), summed over the session. Announced in the hello: a
	// conforming peer's handlers wait to send rather than exceed it, so
	// exceeding it is a protocol error. Default max(64 MiB, 2 ×
	// MaxMessageSize); at least MaxMessageSize.
	MaxResponseBytes int64
	// ChunkTimeout bounds the wait for the next chunk of a message that
	// arrives in chunks (a request, a stream's initial payload, a response
	// or a stream message of more than 64 KiB). A message whose next chunk
	// does not come within it (checked every ChunkTimeout/4) is a protocol
	// error that ends the session. Default 30 s.
	ChunkTimeout time.Duration
	// MaxQueuedBytes bounds the bytes waiting for the writer. A sender over
	// the bound waits (respecting its context); small control frames from
	// the reader never wait. Default 1 MiB.
	MaxQueuedBytes int
	// HelloTimeout bounds the wait for the peer's hello. Default 10 s.
	HelloTimeout time.Duration
	// CloseTimeout bounds the final flush when the session closes.
	// Default 2 s.
	CloseTimeout time.Duration
	// InlineBudget bounds how long a handler registered inline
	// (handlers.Registry.RegisterInline), with the queueing of its answer,
	// holds up the reading of the session: past it, the reading moves to
	// a new goroutine and the handler finishes as a worker. Default
	// 100 µs.
	InlineBudget time.Duration
	// BaseContext is the parent of every handler's context, for values such
	// as the peer's identity. Its cancellation is not watched; close the
	// session instead. Default context.Background().
	BaseContext context.Context
	// Logger receives handler panics and the reason a session failed.
	// Default: discard.
	Logger *slog.Logger

	// Peer names the other end, for interceptors (CallInfo.Peer); the
	// grid sets the peer's host. Default "".
	Peer string
	// ClientInterceptors wrap every Request this side sends, in order:
	// the first is outermost. Default none.
	ClientInterceptors []ClientInterceptor
	// ServerInterceptors wrap every single handler this side runs for its
	// peer, in order: the first is outermost. Default none.
	ServerInterceptors []ServerInterceptor
	// ClientStreamInterceptors wrap every NewStream and OpenStream, in
	// order: the first is outermost. Default none.
	ClientStreamInterceptors []ClientStreamInterceptor
	// ServerStreamInterceptors wrap every stream handler this side runs
	// for its peer, in order: the first is outermost. Default none.
	ServerStreamInterceptors []ServerStreamInterceptor
	// OnStreamMessage, if set, is told of every whole message a stream of
	// the session carries, once: h is the stream's handler, serving says
	// whether this side serves the stream (else it opened it), in whether
	// the message arrived (else this side sent it). It runs on the
	// session's goroutines (the reader's among them) and must return at
	// once: count, do not wait. Default none.
	OnStreamMessage func(h handlers.HandlerID, serving, in bool)
	// Observer, if set, learns of every single request the session sends
	// or serves, its begin and its end with its duration and outcome
	// (RequestObserver), outside every interceptor: the grid's metrics
	// count requests through it, at less cost than an interceptor.
	// Default none.
	Observer RequestObserver
}

const (
	defaultMaxMessageSize = 16 << 20
	maxMaxMessageSize     = 1 << 30
	// defaultMemoryBound is the least default of MaxStreamBytes,
	// MaxRequestBytes and MaxResponseBytes.
	defaultMemoryBound = 64 << 20
	// maxByteBound bounds MaxStreamBytes, MaxRequestBytes and
	// MaxResponseBytes (the hello carries them in 8 bytes; this keeps the
	// sums in int64 far from overflow).
	maxByteBound = 1 << 50
)

// Validate returns nil if NewSession accepts c, else an error naming the
// first invalid field.
func (c Config) Validate() error {
	_, err := c.withDefaults()
	return err
}

// withDefaults returns a copy of c with defaults applied, or an error naming
// the first invalid field.
func (c Config) withDefaults() (Config, error) {
	checks := []struct {
		name string
		v    int
	}{
		{"MaxMessageSize", c.MaxMessageSize}, {"MaxInFlight", c.MaxInFlight},
		{"MaxConcurrent", c.MaxConcurrent}, {"MaxQueuedBytes", c.MaxQueuedBytes}, {"MaxStreams", c.MaxStreams},
		{"HelloTimeout", int(c.HelloTimeout)}, {"CloseTimeout", int(c.CloseTimeout)},
		{"MaxStreamBytes", int(c.MaxStreamBytes)}, {"MaxRequestBytes", int(c.MaxRequestBytes)},
		{"MaxResponseBytes", int(c.MaxResponseBytes)}, {"ChunkTimeout", int(c.ChunkTimeout)},
		{"InlineBudget", int(c.InlineBudget)},
	}
	for _, f := range checks {
		if f.v < 0 {
			return c, fmt.Errorf("mux: config: %s is negative (%d)", f.name, f.v)
		}
	}
	if c.MaxMessageSize > maxMaxMessageSize {
		return c, fmt.Errorf("mux: config: MaxMessageSize %d exceeds %d", c.MaxMessageSize, maxMaxMessageSize)
	}
	defaults.Set(&c.MaxMessageSize, defaultMaxMessageSize)
	bound := max(defaultMemoryBound, 2*int64(c.MaxMessageSize))
	defaults.Set(&c.MaxStreamBytes, bound)
	defaults.Set(&c.MaxRequestBytes, bound)
	defaults.Set(&c.MaxResponseBytes, bound)
	defaults.Set(&c.ChunkTimeout, 30*time.Second)
	for _, f := range []struct {
		name     string
		v, least int64
	}{
		{"MaxStreamBytes", c.MaxStreamBytes, charge(c.MaxMessageSize)},
		{"MaxRequestBytes", c.MaxRequestBytes, charge(c.MaxMessageSize)},
		{"MaxResponseBytes", c.MaxResponseBytes, int64(c.MaxMessageSize)},
	} {
		if f.v < f.least || f.v > maxByteBound {
			return c, fmt.Errorf("mux: config: %s %d is outside %d..%d (MaxMessageSize %d must fit)", f.name, f.v, f.least, int64(maxByteBound), c.MaxMessageSize)
		}
	}
	defaults.Set(&c.MaxInFlight, 16384)
	defaults.Set(&c.MaxConcurrent, 4096)
	defaults.Set(&c.MaxQueuedBytes, 1<<20)
	defaults.Set(&c.MaxStreams, 16384)
	defaults.Set(&c.HelloTimeout, 10*time.Second)
	defaults.Set(&c.CloseTimeout, 2*time.Second)
	defaults.Set(&c.InlineBudget, 100*time.Microsecond)
	if c.BaseContext == nil {
		c.BaseContext = context.Background()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c, nil
}

// Per-handler and per-stream costs in MemoryBound, with room to spare: a
// running handler's worker (its goroutine's stack as the runtime starts
// it, its context and job: about 1.5 KiB of heap and 4 KiB of stack,
// measured) and an open stream's state on either side (the stream, its
// channels, and the goroutine that serves or forwards it: about 3 KiB of
// heap and 2 to 4 KiB of stack, measured; and the storage its message
// queue keeps after a burst, at most keptCap slots of 24 bytes).
const (
	handlerCost = 8 << 10
	streamCost  = 16 << 10
)

// MemoryBound returns the most memory, in bytes, a session with this
// config holds for its peer, whatever the peer sends: the formula of
// doc.go ("Memory"), with c's defaults applied. It counts the session's
// own buffers, queues and goroutines, not what handler code allocates nor
// what the callers hold of what they received. It returns -1 for an
// invalid c.
func (c Config) MemoryBound() int64 {
	c, err := c.withDefaults()
	if err != nil {
		return -1
	}
	const mib = 1 << 20
	q, m := int64(c.MaxQueuedBytes), int64(c.MaxMessageSize)
	conc, streams := int64(c.MaxConcurrent), int64(c.MaxStreams)
	writes := 2 * (4*q + mib + MaxFramePayload)
	reads := int64(smallReadBuffer + largeReadBuffer)
	handlers := conc * (MaxFramePayload + handlerCost)
	requests := c.MaxRequestBytes*3/2 + m
	streamBytes := (c.MaxStreamBytes + 2*streams*streamReserve(c)) * 3 / 2
	return writes + reads + handlers + requests + c.MaxResponseBytes + streamBytes + 2*streams*streamCost
}
