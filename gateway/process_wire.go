package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/gridmesh/gridmesh/internal/defaults"
)

// The process line protocol (PROCESS.md): one JSON object per line. On
// the process's stdin: requests and cancel lines; on its stdout: answers
// and at most one hello line.

// processRequest is one line on a contract process's stdin: a
// transaction, or, with Cancel set, the cancel of the transaction ID.
type processRequest struct {
	// ID is chosen by the host, unique for the process's lifetime; the
	// answer carries it back.
	ID              uint64            `json:"id"`
	TransactionJSON string            `json:"transaction_json"`
	EnvVars         map[string]string `json:"env_vars,omitempty"`
	Secrets         map[string]string `json:"secrets,omitempty"`
	// CanCancel says that the host sends cancel lines to a process that
	// asked for them with a hello line. A process that does not know the
	// field ignores it.
	CanCancel bool `json:"can_cancel,omitempty"`
	// Cancel makes the line a cancel: the host gave up on request ID.
	// Only a process that wrote a hello with Cancel is sent one.
	Cancel bool `json:"cancel,omitempty"`
}

// processAnswer is one line on a contract process's stdout: its answer
// to one request, or, with Hello set, its hello.
type processAnswer struct {
	ID            uint64        `json:"id"`
	ResultJSON    string        `json:"result_json"`
	OutputToChain bool          `json:"output_to_chain"`
	Logs          string        `json:"logs,omitempty"`
	Error         string        `json:"error,omitempty"`
	Hello         *processHello `json:"hello,omitempty"`
}

// processHello is what a process says it takes beyond requests. It
// writes it once, and only after a request with CanCancel.
type processHello struct {
	Cancel bool `json:"cancel"` // cancel lines
}

// helloLine is the hello ServeProcess writes: it takes cancel lines.
const helloLine = `{"hello":{"cancel":true}}` + "\n"

// appendCancelLine appends the cancel line of request id to b.
func appendCancelLine(b []byte, id uint64) []byte {
	return fmt.Appendf(b, `{"id":%d,"cancel":true}`+"\n", id)
}

// maxRequestLine bounds a request line ServeProcess reads: a transaction
// of the grid's largest message, JSON escaping included.
const maxRequestLine = 4 * DefaultMaxLineBytes

// DefaultServeConcurrency is how many transactions ServeProcess runs at
// once: ServeProcessOptions.MaxConcurrent's default.
const DefaultServeConcurrency = 64

// ServeProcessOptions configure ServeProcessWith. The zero value works.
type ServeProcessOptions struct {
	// MaxConcurrent bounds the transactions running at once. While that
	// many run, no further line (cancel lines included) is read from
	// stdin: the host's lines wait in the pipe and its writes block, so a
	// host that sends more than that cannot make the process grow without
	// bound. A worker sends a
	// process at most its in_flight transactions at once (plus those it
	// gave up on and cancelled, until they end), so set it at least to
	// in_flight. Default DefaultServeConcurrency.
	MaxConcurrent int
}

// ServeProcess is the contract's side of the process line protocol, for
// contracts written in Go (see PROCESS.md), with the default options; see
// ServeProcessWith.
func ServeProcess(ctx context.Context, r io.Reader, w io.Writer, fn Contract) error {
	return ServeProcessWith(ctx, r, w, fn, ServeProcessOptions{})
}

// ServeProcessWith is the contract's side of the process line protocol,
// for contracts written in Go (see PROCESS.md): it reads requests from r
// (the process's stdin), runs fn for each in a goroutine of its own, up
// to opts.MaxConcurrent at once, so that answers go out as they are
// ready, in any order, and writes each answer to w (stdout) as one line.
// A panic in fn becomes an answer with an error. fn's context derives
// from ctx; a cancel line from the host for the transaction cancels it,
// with ErrProcessCancelled as its cause (context.Cause). It tells the
// host that it takes cancel lines (the hello line) when the host says it
// sends them.
//
// It returns nil when r ends (the host closed stdin: time to exit) and
// every transaction read was answered, or else the first read, decode or
// write error, also once the transactions running were answered.
func ServeProcessWith(ctx context.Context, r io.Reader, w io.Writer, fn Contract, opts ServeProcessOptions) error {
	if opts.MaxConcurrent < 0 {
		return configError("ServeProcessOptions.MaxConcurrent", "must not be negative")
	}
	defaults.Set(&opts.MaxConcurrent, DefaultServeConcurrency)
	s := &processServer{
		ctx: ctx, fn: fn, w: w,
		slots:   make(chan struct{}, opts.MaxConcurrent),
		running: make(map[uint64]*servedRequest),
	}
	rerr := s.readLoop(r)
	s.wg.Wait()
	if rerr != nil {
		return rerr
	}
	return s.werr
}

// processServer is ServeProcessWith's state. Its caller's goroutine reads
// the lines (readLoop); each transaction runs on a goroutine of its own
// (run), which writes its answer.
type processServer struct {
	ctx   context.Context
	fn    Contract
	slots chan struct{} // a token per running transaction: at most MaxConcurrent
	wg    sync.WaitGroup

	mu      sync.Mutex
	running map[uint64]*servedRequest // by request ID, for cancel lines

	wmu   sync.Mutex // serializes writes to w, and guards what follows
	w     io.Writer
	werr  error // the first write error
	hello bool  // the hello line was written
}

// servedRequest is a running transaction.
type servedRequest struct {
	cancel context.CancelCauseFunc
}

// readLoop reads lines until r ends or a line cannot be decoded. It
// waits for a free slot before it starts a transaction, and so reads
// nothing more while MaxConcurrent run.
func (s *processServer) readLoop(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxRequestLine)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		req := new(processRequest)
		if err := json.Unmarshal(sc.Bytes(), req); err != nil {
			return fmt.Errorf("gateway: decode request line: %w", err)
		}
		if req.Cancel {
			s.cancel(req.ID)
			continue
		}
		if req.CanCancel {
			s.sayHello()
		}
		s.slots <- struct{}{}
		s.start(req)
	}
	return sc.Err()
}

// start runs req on a goroutine of its own; its slot is taken.
func (s *processServer) start(req *processRequest) {
	ctx, cancel := context.WithCancelCause(s.ctx)
	sr := &servedRequest{cancel: cancel}
	s.mu.Lock()
	s.running[req.ID] = sr
	s.mu.Unlock()
	s.wg.Add(1)
	go s.run(ctx, req, sr)
}

// run runs one transaction, writes its answer and frees its slot.
func (s *processServer) run(ctx context.Context, req *processRequest, sr *servedRequest) {
	defer s.wg.Done()
	defer func() { <-s.slots }()
	defer s.forget(req.ID, sr)
	res := callContract(ctx, s.fn, &TxRequest{JSON: req.TransactionJSON, EnvVars: req.EnvVars, Secrets: req.Secrets})
	line, err := json.Marshal(processAnswer{
		ID: req.ID, ResultJSON: res.ResultJSON, OutputToChain: res.OutputToChain, Logs: res.Logs, Error: res.Error,
	})
	s.write(append(line, '\n'), err)
}

// forget drops a finished transaction from the running ones.
func (s *processServer) forget(id uint64, sr *servedRequest) {
	s.mu.Lock()
	if s.running[id] == sr {
		delete(s.running, id)
	}
	s.mu.Unlock()
	sr.cancel(nil)
}

// cancel cancels the running transaction id; a cancel for a transaction
// that ended (its answer crossed the cancel) or never came is ignored.
func (s *processServer) cancel(id uint64) {
	s.mu.Lock()
	sr := s.running[id]
	s.mu.Unlock()
	if sr != nil {
		sr.cancel(ErrProcessCancelled)
	}
}

// sayHello writes the hello line, once.
func (s *processServer) sayHello() {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.hello {
		return
	}
	s.hello = true
	s.writeLocked([]byte(helloLine), nil)
}

// write writes one line, unless encoding it failed (err) or an earlier
// write did; the first error is kept.
func (s *processServer) write(line []byte, err error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.writeLocked(line, err)
}

func (s *processServer) writeLocked(line []byte, err error) {
	if err == nil && s.werr == nil {
		_, err = s.w.Write(line)
	}
	if err != nil && s.werr == nil {
		s.werr = err
	}
}
