package mux

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
)

// Trace context on the wire (SPEC.md, TRACE). A call whose context carries
// a W3C trace context (WithTraceContext) sends an OpTrace frame right
// before its first chunk, with the same ID, to a peer that speaks version
// 3; the serving side hands it to its interceptors in CallInfo. A call
// without one sends nothing more.

const (
	// traceFixed is the binary traceparent: version, trace ID, span ID,
	// flags.
	traceFixed = 1 + 16 + 8 + 1
	// MaxTraceState is the longest tracestate carried; a longer one is
	// not sent (W3C allows a vendor to drop it).
	MaxTraceState = 512
	// traceParentLen is the length of a version 00 traceparent header.
	traceParentLen = 55
)

// wireTrace is a trace context as the frame carries it.
type wireTrace struct {
	bin   [traceFixed]byte
	state string
}

// traceKey is the context key of a call's trace context.
type traceKey struct{}

// outTrace is the trace context a caller put in its context.
type outTrace struct {
	wireTrace
	parentText string // as given
}

// WithTraceContext returns a copy of ctx carrying the W3C trace context
// traceparent (e.g. "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
// and tracestate (may be empty): a Request or stream open made with it
// sends them to the peer (version 3), whose interceptors find them in
// CallInfo. An invalid traceparent (not version-traceid-spanid-flags in
// lower-case hex, an all-zero ID, version ff) leaves ctx without a trace
// context, as the W3C specification has a receiver ignore it; a
// tracestate longer than MaxTraceState bytes or with bytes outside
// printable ASCII is dropped (the traceparent kept). Fields a later
// traceparent version adds after the flags are not carried.
func WithTraceContext(ctx context.Context, traceparent, tracestate string) context.Context {
	bin, ok := parseTraceParent(traceparent)
	if !ok {
		if _, had := ctx.Value(traceKey{}).(*outTrace); had {
			return context.WithValue(ctx, traceKey{}, (*outTrace)(nil))
		}
		return ctx
	}
	if !validTraceState(tracestate) {
		tracestate = ""
	}
	return context.WithValue(ctx, traceKey{}, &outTrace{wireTrace: wireTrace{bin: bin, state: tracestate}, parentText: traceparent})
}

// TraceContext returns the trace context WithTraceContext put in ctx, or
// empty strings.
func TraceContext(ctx context.Context) (traceparent, tracestate string) {
	if t, _ := ctx.Value(traceKey{}).(*outTrace); t != nil {
		return t.parentText, t.state
	}
	return "", ""
}

// traceOf returns the trace context to send with a call made with ctx.
func traceOf(ctx context.Context) *outTrace {
	t, _ := ctx.Value(traceKey{}).(*outTrace)
	return t
}

func parseTraceParent(s string) (bin [traceFixed]byte, ok bool) {
	if len(s) < traceParentLen || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return bin, false
	}
	if !lowerHex(s[:2]) || !lowerHex(s[3:35]) || !lowerHex(s[36:52]) || !lowerHex(s[53:55]) {
		return bin, false
	}
	_, _ = hex.Decode(bin[0:1], []byte(s[:2]))
	_, _ = hex.Decode(bin[1:17], []byte(s[3:35]))
	_, _ = hex.Decode(bin[17:25], []byte(s[36:52]))
	_, _ = hex.Decode(bin[25:26], []byte(s[53:55]))
	switch {
	case bin[0] == 0xff, bin[0] == 0 && len(s) != traceParentLen, len(s) > traceParentLen && s[55] != '-':
		return bin, false
	}
	return bin, checkTraceBin(bin) == nil
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// checkTraceBin checks a binary traceparent as a receiver does.
func checkTraceBin(b [traceFixed]byte) error {
	switch {
	case b[0] == 0xff:
		return fmt.Errorf("%w: trace frame with version ff", ErrProtocol)
	case [16]byte(b[1:17]) == [16]byte{}:
		return fmt.Errorf("%w: trace frame with an all-zero trace ID", ErrProtocol)
	case [8]byte(b[17:25]) == [8]byte{}:
		return fmt.Errorf("%w: trace frame with an all-zero span ID", ErrProtocol)
	}
	return nil
}

func validTraceState(s string) bool {
	if len(s) > MaxTraceState {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// parent formats the traceparent header.
func (t *wireTrace) parent() string {
	var b [traceParentLen]byte
	hex.Encode(b[0:2], t.bin[0:1])
	b[2] = '-'
	hex.Encode(b[3:35], t.bin[1:17])
	b[35] = '-'
	hex.Encode(b[36:52], t.bin[17:25])
	b[52] = '-'
	hex.Encode(b[53:55], t.bin[25:26])
	return string(b[:])
}

// appendTrace appends the OpTrace frame for call id.
func (t *wireTrace) appendFrame(b []byte, id uint64) []byte {
	var hdr [HeaderSize]byte
	h := Header{Op: OpTrace, ID: id, Length: uint32(traceFixed + len(t.state))}
	h.put(&hdr)
	b = append(b, hdr[:]...)
	b = append(b, t.bin[:]...)
	return append(b, t.state...)
}

// sendOpen sends the first message of a call (a request or a stream's
// open), preceded by an OpTrace frame if ctx carries a trace context and
// the peer speaks version 3. Like send, it reports whether any frame was
// queued.
func (s *Session) sendOpen(ctx context.Context, h Header, payload []byte) (sent bool, err error) {
	t := traceOf(ctx)
	if t == nil || s.version < 3 {
		return s.send(ctx, h, payload)
	}
	n := min(len(payload), MaxFramePayload)
	fh, c := h, normal
	if n < len(payload) {
		fh.Flags |= FlagMore
		c = bulk
	}
	if err := s.q.putTraced(ctx, s.closing, &t.wireTrace, fh, payload[:n], c); err != nil {
		return false, err
	}
	if n == len(payload) {
		return true, nil
	}
	h.Seq, h.Handler, h.Deadline = 1, 0, 0
	_, err = s.send(ctx, h, payload[n:])
	return true, err
}

// putTraced is put for a first chunk preceded by its OpTrace frame: both
// go in at once, so that nothing comes between them.
func (q *writeQueue) putTraced(ctx context.Context, done <-chan struct{}, t *wireTrace, h Header, payload []byte, c class) error {
	limit := q.limit
	if c == bulk {
		limit = q.limit / 4
	}
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return ErrDisconnected
		}
		if len(q.buf) < limit {
			empty := len(q.buf) == 0
			q.buf = t.appendFrame(q.buf, h.ID)
			q.buf = AppendFrame(q.buf, h, payload)
			q.mu.Unlock()
			if empty {
				signal(q.wake)
			}
			return nil
		}
		space := q.space
		q.waiters = true
		q.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return ctx.Err()
		case <-done:
			return ErrDisconnected
		}
	}
}

// inTrace is the reader's state between an OpTrace frame and the first
// chunk it precedes.
type inTrace struct {
	pending bool
	id      uint64
	t       *wireTrace
}

// handleTrace reads an OpTrace frame (SPEC.md, TRACE): version 3 only,
// seq and deadline 0 (ParseHeader checked flags and handler), a binary
// traceparent and at most MaxTraceState bytes of printable tracestate, and
// only where a call's first chunk may follow.
func (s *Session) handleTrace(br *bufio.Reader, h Header) error {
	switch {
	case s.version < 3:
		return fmt.Errorf("%w: trace frame in a version %d session", ErrProtocol, s.version)
	case h.Seq != 0 || h.Deadline != 0:
		return fmt.Errorf("%w: trace frame with seq %d and deadline %d (both must be 0)", ErrProtocol, h.Seq, h.Deadline)
	case h.Length < traceFixed || h.Length > traceFixed+MaxTraceState:
		return fmt.Errorf("%w: trace frame of %d bytes (%d..%d)", ErrProtocol, h.Length, traceFixed, traceFixed+MaxTraceState)
	}
	var buf [traceFixed + MaxTraceState]byte
	p, err := readSmall(br, h.Length, buf[:])
	if err != nil {
		return err
	}
	t := &wireTrace{bin: [traceFixed]byte(p)}
	if err := checkTraceBin(t.bin); err != nil {
		return err
	}
	state := p[traceFixed:]
	for _, c := range state {
		if c < 0x20 || c > 0x7e {
			return fmt.Errorf("%w: trace frame with a tracestate byte %#x", ErrProtocol, c)
		}
	}
	t.state = string(state)
	s.inTrace = inTrace{pending: true, id: h.ID, t: t}
	return nil
}

// traceFollows checks the frame after an OpTrace: it must be the first
// chunk of a request or stream open with the trace frame's ID.
func (s *Session) traceFollows(h Header) error {
	if (h.Op == OpRequest || h.Op == OpStreamOpen) && h.Seq == 0 && h.ID == s.inTrace.id {
		return nil
	}
	return fmt.Errorf("%w: trace frame for %d followed by %v %d (seq %d), not the call's first chunk", ErrProtocol, s.inTrace.id, h.Op, h.ID, h.Seq)
}

// takeTrace returns the trace context that preceded the first chunk being
// read (nil if none) and forgets it.
func (s *Session) takeTrace() *wireTrace {
	t := s.inTrace.t
	s.inTrace = inTrace{}
	return t
}
