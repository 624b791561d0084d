package mux

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/gridmesh/gridmesh/handlers"
)

// Version is the highest protocol version this package speaks; it also
// speaks every earlier one. See SPEC.md: version 2 adds OpAck, version 3
// OpTrace.
const Version = 3

// HeaderSize is the size of the fixed frame header in bytes.
const HeaderSize = 24

// MaxFramePayload is the largest payload one frame may carry. Larger
// messages are split into chunks (FlagMore), so that no single message can
// hold the pipe for longer than one chunk's transmission time.
const MaxFramePayload = 64 << 10

// MaxWriteSize is the most a session passes to one Write call on its pipe.
// Frames may span Writes; a message-oriented pipe (a WebSocket adapted to
// net.Conn) needs a read limit of at least this many bytes per message.
const MaxWriteSize = 1 << 20

// Op is a frame's operation.
type Op uint8

// Frame operations. See SPEC.md for each one's payload.
const (
	OpHello    Op = 1 // session parameters; the first frame in each direction
	OpRequest  Op = 2 // a single request (or a chunk of one)
	OpResponse Op = 3 // the one answer to a request (or a chunk of it)
	OpCancel   Op = 4 // the caller gave up on a request
	OpPing     Op = 5 // liveness probe; answered by OpPong with the same ID
	OpPong     Op = 6
	OpClose    Op = 7 // the sender is closing the session; payload is a reason

	OpStreamOpen      Op = 8  // caller opens a stream (payload chunked like a request)
	OpStreamAccept    Op = 9  // server accepts (capacities) or refuses (ERROR) a stream
	OpStreamIn        Op = 10 // a caller message to the handler
	OpStreamOut       Op = 11 // a handler message to the caller
	OpStreamCreditIn  Op = 12 // server grants the caller room for more OpStreamIn
	OpStreamCreditOut Op = 13 // caller grants the server room for more OpStreamOut
	OpStreamCloseIn   Op = 14 // the caller's input ended
	OpStreamEnd       Op = 15 // the handler returned (ERROR: with an error); last frame of a stream

	OpAck   Op = 16 // version 2: the bytes of the session the sender has read so far
	OpTrace Op = 17 // version 3: the W3C trace context of the call whose first chunk follows
)

var opNames = [...]string{
	OpHello: "hello", OpRequest: "request", OpResponse: "response",
	OpCancel: "cancel", OpPing: "ping", OpPong: "pong", OpClose: "close",
	OpStreamOpen: "stream-open", OpStreamAccept: "stream-accept", OpStreamIn: "stream-in",
	OpStreamOut: "stream-out", OpStreamCreditIn: "stream-credit-in",
	OpStreamCreditOut: "stream-credit-out", OpStreamCloseIn: "stream-close-in", OpStreamEnd: "stream-end",
	OpAck: "ack", OpTrace: "trace",
}

func (o Op) String() string {
	if int(o) < len(opNames) && opNames[o] != "" {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Flag bits.
const (
	// FlagMore marks a chunk that is followed by another chunk of the same
	// message (same op and ID, next sequence number).
	FlagMore uint8 = 1 << 0
	// FlagError marks a response whose payload is an error (see SPEC.md).
	FlagError uint8 = 1 << 1
)

// allowedFlags lists the flag bits each op may carry.
var allowedFlags = [...]uint8{
	OpHello:    0,
	OpRequest:  FlagMore,
	OpResponse: FlagMore | FlagError,
	OpCancel:   0,
	OpPing:     0,
	OpPong:     0,
	OpClose:    0,

	OpStreamOpen:      FlagMore,
	OpStreamAccept:    FlagError,
	OpStreamIn:        FlagMore,
	OpStreamOut:       FlagMore,
	OpStreamCreditIn:  0,
	OpStreamCreditOut: 0,
	OpStreamCloseIn:   0,
	OpStreamEnd:       FlagError,

	OpAck:   0,
	OpTrace: 0,
}

// Header is a decoded frame header.
type Header struct {
	Op       Op
	Flags    uint8
	Handler  handlers.HandlerID
	Length   uint32 // payload bytes following the header
	ID       uint64 // request ID, chosen by the side that sent the request
	Seq      uint32 // chunk number within a message, from 0
	Deadline uint32 // milliseconds the caller still waits; 0 = no deadline
}

// AppendFrame appends h and payload to b as one frame. h.Length is taken
// from len(payload), which must not exceed MaxFramePayload.
func AppendFrame(b []byte, h Header, payload []byte) []byte {
	var hdr [HeaderSize]byte
	h.Length = uint32(len(payload))
	h.put(&hdr)
	b = append(b, hdr[:]...)
	return append(b, payload...)
}

func (h *Header) put(p *[HeaderSize]byte) {
	p[0] = byte(h.Op)
	p[1] = h.Flags
	binary.BigEndian.PutUint16(p[2:], uint16(h.Handler))
	binary.BigEndian.PutUint32(p[4:], h.Length)
	binary.BigEndian.PutUint64(p[8:], h.ID)
	binary.BigEndian.PutUint32(p[16:], h.Seq)
	binary.BigEndian.PutUint32(p[20:], h.Deadline)
}

// ParseHeader decodes and checks a frame header. It reports an error, never
// panics, for an unknown op, flags the op does not allow, a payload length
// over MaxFramePayload (or other than MaxFramePayload on a chunk that is
// not a message's last), or a handler ID on an op that takes none (or a
// missing one on a request's first chunk). It does not read the payload.
func ParseHeader(p []byte) (Header, error) {
	if len(p) < HeaderSize {
		return Header{}, fmt.Errorf("%w: short header (%d bytes)", ErrProtocol, len(p))
	}
	h := Header{
		Op:       Op(p[0]),
		Flags:    p[1],
		Handler:  handlers.HandlerID(binary.BigEndian.Uint16(p[2:])),
		Length:   binary.BigEndian.Uint32(p[4:]),
		ID:       binary.BigEndian.Uint64(p[8:]),
		Seq:      binary.BigEndian.Uint32(p[16:]),
		Deadline: binary.BigEndian.Uint32(p[20:]),
	}
	if h.Op == 0 || int(h.Op) >= len(allowedFlags) {
		return h, fmt.Errorf("%w: unknown op %d", ErrProtocol, p[0])
	}
	if h.Flags&^allowedFlags[h.Op] != 0 {
		return h, fmt.Errorf("%w: %v frame with flags %#x", ErrProtocol, h.Op, h.Flags)
	}
	if h.Length > MaxFramePayload {
		return h, fmt.Errorf("%w: %v frame of %d bytes exceeds %d", ErrProtocol, h.Op, h.Length, MaxFramePayload)
	}
	if h.Flags&FlagMore != 0 && h.Length != MaxFramePayload {
		return h, fmt.Errorf("%w: %v chunk of %d bytes: every chunk but the last carries %d", ErrProtocol, h.Op, h.Length, MaxFramePayload)
	}
	opens := h.Op == OpRequest || h.Op == OpStreamOpen
	if opens && h.Seq == 0 && !h.Handler.Valid() {
		return h, fmt.Errorf("%w: %v %d names invalid handler %d", ErrProtocol, h.Op, h.ID, uint16(h.Handler))
	}
	if (!opens || h.Seq != 0) && h.Handler != 0 {
		return h, fmt.Errorf("%w: %v frame names handler %d", ErrProtocol, h.Op, uint16(h.Handler))
	}
	return h, nil
}

// hello is the payload of OpHello.
type hello struct {
	Version        uint8
	MaxMessageSize uint32 // the largest message the sender accepts
	MaxConcurrent  uint32 // requests the sender serves at once for its peer
	MaxStreams     uint32 // streams the sender serves at once for its peer

	// The sender's byte bounds (SPEC.md, Limits); 0 in a hello without
	// them (an older peer's: 20 bytes), which bounds nothing.
	MaxRequestBytes  uint64
	MaxResponseBytes uint64
	MaxStreamBytes   uint64
	StreamReserve    uint32
}

const (
	helloSize       = 20 // the fields every version sends
	helloBoundsSize = 48 // with the byte bounds
)

var helloMagic = [4]byte{'G', 'M', 'U', 'X'}

func (h hello) append(b []byte) []byte {
	b = append(b, helloMagic[:]...)
	b = append(b, h.Version, 0, 0, 0)
	b = binary.BigEndian.AppendUint32(b, h.MaxMessageSize)
	b = binary.BigEndian.AppendUint32(b, h.MaxConcurrent)
	b = binary.BigEndian.AppendUint32(b, h.MaxStreams)
	if h.MaxRequestBytes == 0 {
		return b // no byte bounds: an older peer's hello
	}
	b = binary.BigEndian.AppendUint64(b, h.MaxRequestBytes)
	b = binary.BigEndian.AppendUint64(b, h.MaxResponseBytes)
	b = binary.BigEndian.AppendUint64(b, h.MaxStreamBytes)
	return binary.BigEndian.AppendUint32(b, h.StreamReserve)
}

func parseHello(p []byte) (hello, error) {
	if len(p) < helloSize || [4]byte(p[:4]) != helloMagic {
		return hello{}, fmt.Errorf("%w: malformed hello", ErrProtocol)
	}
	h := hello{
		Version:        p[4],
		MaxMessageSize: binary.BigEndian.Uint32(p[8:]),
		MaxConcurrent:  binary.BigEndian.Uint32(p[12:]),
		MaxStreams:     binary.BigEndian.Uint32(p[16:]),
	}
	if len(p) >= helloBoundsSize {
		h.MaxRequestBytes = binary.BigEndian.Uint64(p[20:])
		h.MaxResponseBytes = binary.BigEndian.Uint64(p[28:])
		h.MaxStreamBytes = binary.BigEndian.Uint64(p[36:])
		h.StreamReserve = binary.BigEndian.Uint32(p[44:])
		if h.MaxRequestBytes == 0 || h.MaxResponseBytes == 0 || h.MaxStreamBytes == 0 ||
			max(h.MaxRequestBytes, h.MaxResponseBytes, h.MaxStreamBytes) > maxByteBound {
			return h, fmt.Errorf("%w: hello with byte bounds %d/%d/%d", ErrProtocol, h.MaxRequestBytes, h.MaxResponseBytes, h.MaxStreamBytes)
		}
	}
	if h.Version == 0 {
		return h, fmt.Errorf("%w: hello with version 0", ErrProtocol)
	}
	if h.MaxMessageSize == 0 || h.MaxConcurrent == 0 || h.MaxStreams == 0 {
		return h, fmt.Errorf("%w: hello with zero limits", ErrProtocol)
	}
	return h, nil
}

// Error codes: the first payload byte of a response with FlagError.
const (
	codeHandler   = 1 // the handler returned an error
	codePanic     = 2 // the handler panicked
	codeUnknown   = 3 // no handler registered for the ID
	codeBusy      = 4 // the serving side ran out of handler slots
	codeTooLarge  = 5 // the response exceeds the caller's message size
	codeCanceled  = 6 // the caller cancelled; the answer is only an acknowledgement
	codeDeadline  = 7 // the handler returned context.DeadlineExceeded
	codeStreams   = 8 // the serving side has no free stream slot
	maxErrorBytes = 4 << 10
)

func appendError(b []byte, code byte, msg string) []byte {
	if len(msg) > maxErrorBytes {
		msg = msg[:maxErrorBytes]
	}
	return append(append(b, code), msg...)
}

// deadlineMillis converts a remaining wait into the header's deadline field:
// rounded up, at least 1 ms, at most the field's range.
func deadlineMillis(ms int64) uint32 {
	switch {
	case ms < 1:
		return 1
	case ms > math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(ms)
}
