package mux

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

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
	// MaxStreamBytes bounds the bytes this side may have to buffer for
	// the consumers of its open streams, summed over the session: a stream
	// commits its receiving capacity (messages) × MaxMessageSize, the most
	// its peer may send it without waiting, for as long as it is open. A
	// stream that would take the sum over the bound is refused with an
	// error matching ErrTooManyStreams: by the peer's accept when this side
	// serves it, locally (after the accept, which carries the capacity)
	// when this side opened it. Default 0: no bound beyond MaxStreams
	// streams of at most 65536 messages each way.
	MaxStreamBytes int64
	// MaxQueuedBytes bounds the bytes waiting for the writer. A sender over
	// the bound waits (respecting its context); small control frames from
	// the reader never wait. Default 1 MiB.
	MaxQueuedBytes int
	// HelloTimeout bounds the wait for the peer's hello. Default 10 s.
	HelloTimeout time.Duration
	// CloseTimeout bounds the final flush when the session closes.
	// Default 2 s.
	CloseTimeout time.Duration
	// BaseContext is the parent of every handler's context, for values such
	// as the peer's identity. Its cancellation is not watched; close the
	// session instead. Default context.Background().
	BaseContext context.Context
	// Logger receives handler panics and the reason a session failed.
	// Default: discard.
	Logger *slog.Logger
}

const (
	defaultMaxMessageSize = 16 << 20
	maxMaxMessageSize     = 1 << 30
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
		{"MaxStreamBytes", int(c.MaxStreamBytes)},
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
	defaults.Set(&c.MaxInFlight, 16384)
	defaults.Set(&c.MaxConcurrent, 4096)
	defaults.Set(&c.MaxQueuedBytes, 1<<20)
	defaults.Set(&c.MaxStreams, 16384)
	defaults.Set(&c.HelloTimeout, 10*time.Second)
	defaults.Set(&c.CloseTimeout, 2*time.Second)
	if c.BaseContext == nil {
		c.BaseContext = context.Background()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c, nil
}
