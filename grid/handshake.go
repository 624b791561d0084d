package grid

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Authenticator proves who sent a handshake and checks such proofs. The
// grid builds the message to sign itself: it holds the sender and receiver
// names, a timestamp, a fresh nonce, the sender's instance ID and the host
// list's hash (for the dialer's request), or the dialer's nonce and the
// acceptor's instance ID (for the acceptor's answer). Freshness, replay and
// name checks are the grid's job; an Authenticator only signs and verifies.
// Methods may be called concurrently.
type Authenticator interface {
	// Sign returns a proof that the node named local produced msg.
	Sign(local string, msg []byte) ([]byte, error)
	// Verify returns nil if proof shows that the node named peer produced
	// msg.
	Verify(peer string, msg, proof []byte) error
}

// HMACAuthenticator returns the default Authenticator: HMAC-SHA256 of the
// message keyed with a secret shared by every node. The secret never
// crosses the wire.
func HMACAuthenticator(secret []byte) Authenticator {
	return hmacAuth{key: append([]byte(nil), secret...)}
}

type hmacAuth struct{ key []byte }

func (a hmacAuth) Sign(_ string, msg []byte) ([]byte, error) {
	m := hmac.New(sha256.New, a.key)
	m.Write(msg)
	return m.Sum(nil), nil
}

func (a hmacAuth) Verify(_ string, msg, proof []byte) error {
	want, _ := a.Sign("", msg)
	if !hmac.Equal(want, proof) {
		return ErrAuth
	}
	return nil
}

// Handshake header names. The dialer sends all but headerProof's answer;
// the acceptor answers with headerInstance and headerProof.
const (
	headerFrom     = "X-Gridmesh-From"
	headerTo       = "X-Gridmesh-To"
	headerTime     = "X-Gridmesh-Time" // unix milliseconds
	headerNonce    = "X-Gridmesh-Nonce"
	headerInstance = "X-Gridmesh-Instance"
	headerHosts    = "X-Gridmesh-Hosts"
	headerProof    = "X-Gridmesh-Proof"

	maxHeaderLen = 1024 // longer handshake values are refused unread
	nonceLen     = 16   // random bytes in a nonce or an instance ID
)

// handshake holds the fields of a dialer's request.
type handshake struct {
	from, to string
	millis   int64
	nonce    string
	instance string
	hosts    string
}

// newID returns nonceLen random bytes in hex.
func newID() string {
	var b [nonceLen]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// dialMessage is what a dialer signs.
func (h handshake) dialMessage() []byte {
	return appendFields([]byte("gridmesh-dial-v1"),
		h.from, h.to, strconv.FormatInt(h.millis, 10), h.nonce, h.instance, h.hosts)
}

// acceptMessage is what an acceptor signs: the dialer's nonce binds the
// answer to this handshake.
func (h handshake) acceptMessage(acceptorInstance string) []byte {
	return appendFields([]byte("gridmesh-accept-v1"), h.from, h.to, h.nonce, acceptorInstance)
}

// appendFields appends length-prefixed fields, so no two field lists encode
// alike.
func appendFields(b []byte, fields ...string) []byte {
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// header returns the request headers for h, signed by auth (nil: unsigned).
func (h handshake) header(auth Authenticator) (http.Header, error) {
	hdr := http.Header{}
	hdr.Set(headerFrom, h.from)
	hdr.Set(headerTo, h.to)
	hdr.Set(headerTime, strconv.FormatInt(h.millis, 10))
	hdr.Set(headerNonce, h.nonce)
	hdr.Set(headerInstance, h.instance)
	hdr.Set(headerHosts, h.hosts)
	if auth != nil {
		proof, err := auth.Sign(h.from, h.dialMessage())
		if err != nil {
			return nil, fmt.Errorf("grid: sign handshake: %w", err)
		}
		hdr.Set(headerProof, base64.RawURLEncoding.EncodeToString(proof))
	}
	return hdr, nil
}

// rejection is why an acceptor refused a handshake: an HTTP status and a
// reason the dialer is shown.
type rejection struct {
	status int
	reason string
	kind   string // the reason's format: the same for every rejection of its kind, whatever the dialer sent
}

func (r *rejection) Error() string { return r.reason }

func reject(status int, format string, args ...any) *rejection {
	return &rejection{status: status, reason: fmt.Sprintf(format, args...), kind: format}
}

// parseHandshake reads the dialer's fields from hdr, checking only their
// shape.
func parseHandshake(hdr http.Header) (handshake, []byte, *rejection) {
	var h handshake
	get := func(name string) string {
		v := hdr.Get(name)
		if len(v) > maxHeaderLen {
			return ""
		}
		return v
	}
	h.from, h.to, h.hosts = get(headerFrom), get(headerTo), get(headerHosts)
	h.nonce, h.instance = get(headerNonce), get(headerInstance)
	if h.from == "" || h.to == "" || h.hosts == "" {
		return h, nil, reject(http.StatusBadRequest, "bad handshake: missing or oversized %s, %s or %s header", headerFrom, headerTo, headerHosts)
	}
	if !isID(h.nonce) || !isID(h.instance) {
		return h, nil, reject(http.StatusBadRequest, "bad handshake: nonce and instance must be %d hex digits", 2*nonceLen)
	}
	ms, err := strconv.ParseInt(get(headerTime), 10, 64)
	if err != nil {
		return h, nil, reject(http.StatusBadRequest, "bad handshake: %s is not unix milliseconds", headerTime)
	}
	h.millis = ms
	var proof []byte
	if p := get(headerProof); p != "" {
		if proof, err = base64.RawURLEncoding.DecodeString(p); err != nil {
			return h, nil, reject(http.StatusBadRequest, "bad handshake: %s is not base64", headerProof)
		}
	}
	return h, proof, nil
}

// isID reports whether s looks like newID's output.
func isID(s string) bool {
	if len(s) != 2*nonceLen {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// verifyDial checks a dialer's handshake on the accepting node; on success
// the nonce is remembered so the same header set cannot be used again.
// The checks that need no proof come first, then the proof, and only then
// the checks that tell an authenticated peer about a misconfiguration.
func (m *Manager) verifyDial(hdr http.Header) (handshake, *rejection) {
	h, proof, rej := parseHandshake(hdr)
	if rej != nil {
		return h, rej
	}
	o := &m.opts
	if h.to != o.Local {
		return h, reject(http.StatusForbidden, "wrong node: this is %q, not %q", o.Local, h.to)
	}
	if m.Connection(h.from) == nil {
		return h, reject(http.StatusForbidden, "unknown host %q: not in this node's host list", h.from)
	}
	now := o.Now()
	skew := now.Sub(time.UnixMilli(h.millis))
	if skew > o.ClockSkew || skew < -o.ClockSkew {
		// The reason names no measured value, so that retries repeat it
		// word for word and it is logged once.
		side := "behind"
		if skew < 0 {
			side = "ahead of"
		}
		return h, reject(http.StatusUnauthorized, "clock skew: %q's clock is more than %v %s %q's", h.from, o.ClockSkew, side, o.Local)
	}
	if o.Authenticator != nil {
		if err := o.Authenticator.Verify(h.from, h.dialMessage(), proof); err != nil {
			return h, reject(http.StatusUnauthorized, "authentication failed: %v", err)
		}
	}
	// Host lists may differ while membership changes: each side lists
	// the other (the dialer dials only peers it lists), which is enough.
	if ShouldDial(o.Local, h.from) {
		return h, reject(http.StatusConflict, "wrong dial side: %q dials %q, not the other way round", o.Local, h.from)
	}
	expiry := time.UnixMilli(h.millis).Add(o.ClockSkew)
	if rej := m.replay.add(h.nonce, now, expiry); rej != nil {
		return h, rej
	}
	return h, nil
}

// checkHandshake checks the handshake of a dialer's request r and, if it
// is accepted, signs the answer into w's header. If not, it has answered
// w, closing the connection, and returns false. At most MaxPendingConns
// handshakes are checked at once: the others are refused unchecked, at
// the cost of a channel operation.
func (m *Manager) checkHandshake(w http.ResponseWriter, r *http.Request) (handshake, bool) {
	select {
	case m.handshakes <- struct{}{}:
		defer func() { <-m.handshakes }()
	default:
		rej := reject(http.StatusServiceUnavailable, "too many handshakes in progress: retry later")
		m.logRejection("", r.RemoteAddr, rej)
		refuse(w, rej.status, rej.reason)
		return handshake{}, false
	}
	h, rej := m.verifyDial(r.Header)
	if rej != nil {
		m.logRejection(h.from, r.RemoteAddr, rej)
		refuse(w, rej.status, rej.reason)
		return h, false
	}
	if err := m.signAccept(w.Header(), h); err != nil {
		m.opts.Logger.Warn("grid: cannot answer handshake", "peer", h.from, "err", err)
		refuse(w, http.StatusInternalServerError, "cannot sign answer")
		return h, false
	}
	return h, true
}

// refuse answers a handshake with an error and has the server close the
// connection after it: a refused dialer, whether a misconfigured peer or
// a stranger, keeps no socket open on this node. (The grid's own dialer
// closes its side after any answer but the upgrade anyway.)
func refuse(w http.ResponseWriter, status int, reason string) {
	w.Header().Set("Connection", "close")
	http.Error(w, reason, status)
}

// signAccept returns the acceptor's answer headers for h.
func (m *Manager) signAccept(w http.Header, h handshake) error {
	w.Set(headerInstance, m.instance)
	if m.opts.Authenticator == nil {
		return nil
	}
	proof, err := m.opts.Authenticator.Sign(m.opts.Local, h.acceptMessage(m.instance))
	if err != nil {
		return fmt.Errorf("grid: sign answer: %w", err)
	}
	w.Set(headerProof, base64.RawURLEncoding.EncodeToString(proof))
	return nil
}

// verifyAccept checks the acceptor's answer on the dialing node and returns
// the acceptor's instance ID.
func (m *Manager) verifyAccept(h handshake, resp http.Header) (string, error) {
	inst := resp.Get(headerInstance)
	if !isID(inst) {
		return "", fmt.Errorf("%w: %q answered without a valid instance ID", ErrAuth, h.to)
	}
	if m.opts.Authenticator == nil {
		return inst, nil
	}
	proof, err := base64.RawURLEncoding.DecodeString(resp.Get(headerProof))
	if err != nil || len(proof) == 0 {
		return "", fmt.Errorf("%w: %q answered without a valid proof", ErrAuth, h.to)
	}
	if err := m.opts.Authenticator.Verify(h.to, h.acceptMessage(inst), proof); err != nil {
		return "", fmt.Errorf("%w: %q's answer: %w", ErrAuth, h.to, err)
	}
	return inst, nil
}

// replayCache remembers the nonces of accepted handshakes until their
// timestamps leave the skew window, so a captured header set cannot be
// replayed. It holds at most max nonces.
type replayCache struct {
	mu    sync.Mutex
	max   int
	seen  map[string]time.Time // nonce → expiry
	order []replayEntry        // in insertion order, for pruning
}

type replayEntry struct {
	nonce  string
	expiry time.Time
}

func newReplayCache(max int) *replayCache {
	return &replayCache{max: max, seen: make(map[string]time.Time)}
}

// add records nonce until expiry, or refuses it if it was seen or the
// cache is full of unexpired nonces.
func (c *replayCache) add(nonce string, now, expiry time.Time) *rejection {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.prune(now)
	if _, ok := c.seen[nonce]; ok {
		return reject(http.StatusUnauthorized, "replayed handshake: nonce already used")
	}
	if len(c.seen) >= c.max {
		return reject(http.StatusServiceUnavailable, "too many handshakes: replay cache full, retry later")
	}
	c.seen[nonce] = expiry
	c.order = append(c.order, replayEntry{nonce, expiry})
	return nil
}

// prune drops expired entries from the front of the insertion order. An
// entry behind a longer-lived one waits for it: at most twice the skew
// window.
func (c *replayCache) prune(now time.Time) {
	i := 0
	for i < len(c.order) && now.After(c.order[i].expiry) {
		delete(c.seen, c.order[i].nonce)
		i++
	}
	if i > 0 {
		c.order = append(c.order[:0], c.order[i:]...)
	}
}
