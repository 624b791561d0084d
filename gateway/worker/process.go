package worker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/gridmesh/gridmesh/gateway/contract"
)

const (
	// processDrainTimeout bounds the wait for a process's last answers
	// after it exited (a descendant outside its group may hold stdout).
	processDrainTimeout = time.Second
	// stderrLineMax cuts one stderr line; stderrLinesPerSecond bounds how
	// many are logged per process and second (the rest are counted).
	stderrLineMax        = 4 << 10
	stderrLinesPerSecond = 100
	// stderrTailBytes is how much of the end of stderr a process's exit
	// error quotes.
	stderrTailBytes = 512
)

// process is one running contract process. Its writer goroutine owns
// stdin, its reader goroutine stdout and another stderr; the supervising
// goroutine runs wait, which waits for all three.
type process struct {
	pool *ProcessPool
	cmd  *exec.Cmd
	pid  int
	kill context.CancelFunc // SIGKILLs the process group (exec's Cancel)

	stdin, stdout, stderr *os.File      // this side's ends of the pipes
	in                    chan []byte   // request lines, for the writer
	wake                  chan struct{} // buffered 1: cancels were queued, for the writer
	stopInput             chan struct{} // closed: the writer closes stdin
	stopOnce              sync.Once
	readerDone            chan struct{}
	wg                    sync.WaitGroup // reader, writer, stderr reader
	tail                  []string       // last stderr lines; the stderr reader's until wg.Wait

	mu        sync.Mutex
	pending   map[uint64]chan answer
	nextID    uint64
	canCancel bool     // it wrote a hello with cancel: it takes cancel lines
	answered  bool     // it answered a request: a hello, if any, came before
	cancels   []uint64 // requests to cancel, for the writer
	early     []uint64 // requests given up on before its hello: cancelled if one comes
	broken    string   // the first protocol violation, or why it was taken for wedged
	kind      error    // ErrProcessProtocol or ErrProcessWedged, with broken
	missed    int      // transactions in a row past their deadline without an answer
	dead      error    // set when the process ended; calls fail with it
}

// answer is what a caller waiting on a process gets: the process's
// answer, or why there will be none.
type answer struct {
	a   contract.Answer
	err error
}

// processError says why a process ended; every transaction in flight on
// it fails with it.
type processError struct {
	kind   error // ErrProcessExited, ErrProcessProtocol, ErrProcessWedged or ErrProcessClosed
	pid    int
	reason string
	stderr string
}

func (e *processError) Error() string {
	s := fmt.Sprintf("%v (pid %d): %s", e.kind, e.pid, e.reason)
	if e.stderr != "" {
		s += fmt.Sprintf("; stderr ends with %q", e.stderr)
	}
	return s
}

func (e *processError) Unwrap() error { return e.kind }

// startProcess starts one process for slot and its three goroutines.
func (p *ProcessPool) startProcess(slot int) (*process, error) {
	ctx, kill := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, p.cfg.Command[0], p.cfg.Command[1:]...)
	cmd.Dir = p.cfg.Dir
	cmd.Env = append(commandEnv(nil, nil), p.cfg.Env...)
	setProcessGroup(cmd)
	var ends [6]*os.File // stdin r/w, stdout r/w, stderr r/w
	closeAll := func() {
		for _, f := range ends {
			if f != nil {
				f.Close()
			}
		}
	}
	for i := 0; i < len(ends); i += 2 {
		r, w, err := os.Pipe()
		if err != nil {
			closeAll()
			kill()
			return nil, fmt.Errorf("worker: contract process pipes: %w", err)
		}
		ends[i], ends[i+1] = r, w
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = ends[0], ends[3], ends[5]
	err := cmd.Start()
	for _, i := range []int{0, 3, 5} { // the child's ends, now its own
		ends[i].Close()
		ends[i] = nil
	}
	if err != nil {
		closeAll()
		kill()
		return nil, fmt.Errorf("worker: start contract process %q: %w", p.cfg.Command[0], err)
	}
	pr := &process{
		pool: p, cmd: cmd, pid: cmd.Process.Pid, kill: kill,
		stdin: ends[1], stdout: ends[2], stderr: ends[4],
		in:        make(chan []byte, p.cfg.InFlight),
		wake:      make(chan struct{}, 1),
		stopInput: make(chan struct{}), readerDone: make(chan struct{}),
		pending: make(map[uint64]chan answer),
	}
	p.starts.Add(1)
	p.log.Debug("worker: contract process started", "slot", slot, "pid", pr.pid)
	pr.wg.Add(3)
	go pr.readLoop()
	go pr.writeLoop()
	go pr.stderrLoop()
	return pr, nil
}

// call sends req and waits for its answer, the process's end or ctx.
// When ctx ends first, the process is sent a cancel line for req, if it
// takes them.
func (pr *process) call(ctx context.Context, req *contract.Request) (contract.Output, error) {
	ch := make(chan answer, 1)
	pr.mu.Lock()
	if pr.dead != nil {
		err := pr.dead
		pr.mu.Unlock()
		return contract.Output{}, err
	}
	pr.nextID++
	req.ID = pr.nextID
	pr.pending[req.ID] = ch
	pr.mu.Unlock()
	req.CanCancel = true
	line, err := json.Marshal(req)
	if err != nil {
		pr.forget(req.ID)
		return contract.Output{}, fmt.Errorf("worker: encode request: %w", err)
	}
	select {
	case pr.in <- append(line, '\n'):
	case a := <-ch:
		return pr.output(a)
	case <-ctx.Done():
		return contract.Output{}, pr.giveUp(ctx, req.ID, false)
	}
	select {
	case a := <-ch:
		return pr.output(a)
	case <-ctx.Done():
		return contract.Output{}, pr.giveUp(ctx, req.ID, true)
	}
}

// giveUp forgets a call whose context ended and returns its error. A
// call past its deadline counts towards WedgedAfter. A call whose
// request was queued for the writer (sent) is cancelled on the process,
// if it takes cancel lines.
func (pr *process) giveUp(ctx context.Context, id uint64, sent bool) error {
	err := pr.timeout(ctx)
	pr.mu.Lock()
	_, waiting := pr.pending[id] // else its answer (or the process's end) just came
	delete(pr.pending, id)
	wedged := false
	if limit := pr.pool.cfg.WedgedAfter; waiting && limit > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		pr.missed++
		wedged = pr.missed == limit
	}
	cancel := false
	if waiting && sent && pr.dead == nil {
		switch {
		case pr.canCancel:
			pr.cancels = append(pr.cancels, id)
			cancel = true
		case !pr.answered && len(pr.early) < maxEarlyCancels:
			pr.early = append(pr.early, id) // its hello may be on the way
		}
	}
	pr.mu.Unlock()
	if cancel {
		pr.queuedCancels(1)
	}
	if wedged {
		pr.stopFor(ErrProcessWedged, fmt.Sprintf("answered none of the last %d transactions before their deadline", pr.pool.cfg.WedgedAfter))
	}
	return err
}

func (pr *process) timeout(ctx context.Context) error {
	return fmt.Errorf("worker: contract process (pid %d) did not answer in time: %w", pr.pid, context.Cause(ctx))
}

// output turns an answer into the Contract's return values; a contract
// error comes back as an error with the logs, like a command's.
func (pr *process) output(a answer) (contract.Output, error) {
	if a.err != nil {
		return contract.Output{}, a.err
	}
	out := contract.Output{ResultJSON: a.a.ResultJSON, OutputToChain: a.a.OutputToChain, Logs: a.a.Logs}
	if max := pr.pool.cfg.MaxLogBytes; len(out.Logs) > max {
		out.Logs = out.Logs[:max] + fmt.Sprintf("\n[logs cut at %d bytes]", max)
	}
	if a.a.Error != "" {
		return out, errors.New(a.a.Error)
	}
	if !json.Valid([]byte(a.a.ResultJSON)) {
		return out, fmt.Errorf("contract process answered invalid JSON in result_json (%d bytes)", len(a.a.ResultJSON))
	}
	return out, nil
}

// forget drops a call whose caller gave up; its answer, if it comes, is
// counted as late.
func (pr *process) forget(id uint64) {
	pr.mu.Lock()
	delete(pr.pending, id)
	pr.mu.Unlock()
}

// maxEarlyCancels bounds the requests a process is remembered to have
// been given up on before its hello: it says hello before its first
// answer, if at all.
const maxEarlyCancels = 1024

// hello records what the process said it takes. The requests given up on
// before are cancelled now.
func (pr *process) hello(h *contract.Hello) {
	pr.mu.Lock()
	n := 0
	if h.Cancel && !pr.canCancel {
		pr.canCancel = true
		n = len(pr.early)
		pr.cancels = append(pr.cancels, pr.early...)
		pr.early = nil
	}
	pr.mu.Unlock()
	if n > 0 {
		pr.queuedCancels(n)
	}
}

// queuedCancels counts n cancels queued and wakes the writer.
func (pr *process) queuedCancels(n int) {
	pr.pool.cancelled.Add(uint64(n))
	select {
	case pr.wake <- struct{}{}:
	default: // the writer is woken already
	}
}

// takeCancels returns the requests to cancel and forgets them.
func (pr *process) takeCancels() []uint64 {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	ids := pr.cancels
	pr.cancels = nil
	return ids
}

// deliver hands an answer to its caller.
func (pr *process) deliver(a contract.Answer) error {
	pr.mu.Lock()
	ch, ok := pr.pending[a.ID]
	delete(pr.pending, a.ID)
	sent := pr.nextID
	if a.ID > 0 && a.ID <= sent {
		pr.missed = 0 // it answers, if late: not wedged
	}
	pr.answered = true
	pr.early = nil // no hello before its first answer: none is coming
	pr.mu.Unlock()
	switch {
	case ok:
		ch <- answer{a: a}
	case a.ID == 0 || a.ID > sent:
		return fmt.Errorf("wrote an answer with id %d, which was never sent", a.ID)
	default:
		pr.pool.late.Add(1)
	}
	return nil
}

// breakProtocol records the first protocol violation and kills the
// process.
func (pr *process) breakProtocol(reason string) { pr.stopFor(ErrProcessProtocol, reason) }

// stopFor records why the process is killed (ErrProcessProtocol or
// ErrProcessWedged), unless a reason was recorded already, and kills it.
func (pr *process) stopFor(kind error, reason string) {
	pr.mu.Lock()
	first := pr.broken == ""
	if first {
		pr.broken, pr.kind = reason, kind
	}
	pr.mu.Unlock()
	if first && kind == ErrProcessWedged {
		pr.pool.wedged.Add(1)
		pr.pool.log.Warn("worker: contract process stopped answering; killing it", "pid", pr.pid, "reason", reason)
	} else if first {
		pr.pool.protocolErrs.Add(1)
	}
	pr.kill()
}

// readLoop reads answers from stdout until it ends or breaks the
// protocol.
func (pr *process) readLoop() {
	defer pr.wg.Done()
	defer close(pr.readerDone)
	limit := pr.pool.cfg.MaxLineBytes
	sc := bufio.NewScanner(pr.stdout)
	sc.Buffer(make([]byte, 0, min(64<<10, limit+1)), limit+1) // +1: the newline
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var a contract.Answer
		if err := json.Unmarshal(line, &a); err != nil {
			pr.breakProtocol(fmt.Sprintf("wrote a line that is not an answer object: %v", err))
			return
		}
		if a.Hello != nil {
			pr.hello(a.Hello)
			continue
		}
		if err := pr.deliver(a); err != nil {
			pr.breakProtocol(err.Error())
			return
		}
	}
	if errors.Is(sc.Err(), bufio.ErrTooLong) {
		pr.breakProtocol(fmt.Sprintf("wrote a line longer than %d bytes", limit))
	}
}

// writeLoop writes request and cancel lines to stdin, as many as are
// queued at once, until the process stops reading or Close stops the
// input. A cancel line always follows its request's line: the cancels
// are taken before the queue of requests is emptied, and a call queues
// its request before its cancel.
func (pr *process) writeLoop() {
	defer pr.wg.Done()
	defer pr.stdin.Close()
	w := bufio.NewWriterSize(pr.stdin, 64<<10)
	var cancel []byte
	for {
		select {
		case line := <-pr.in:
			_, _ = w.Write(line)
		case <-pr.wake:
		case <-pr.stopInput:
			return
		}
		ids := pr.takeCancels()
		pr.writeQueued(w)
		for _, id := range ids {
			cancel = contract.AppendCancelLine(cancel[:0], id)
			_, _ = w.Write(cancel)
		}
		if err := w.Flush(); err != nil {
			// The process closed its stdin or ended: without input it
			// can answer nothing more, so end it.
			pr.kill()
			return
		}
	}
}

// writeQueued writes the request lines queued, until none is.
func (pr *process) writeQueued(w *bufio.Writer) {
	for {
		select {
		case line := <-pr.in:
			_, _ = w.Write(line)
		default:
			return
		}
	}
}

// stderrLoop logs stderr lines, each cut at stderrLineMax, at most
// stderrLinesPerSecond a second, and keeps the last ones for the exit
// error.
func (pr *process) stderrLoop() {
	defer pr.wg.Done()
	log := pr.pool.log.With("pid", pr.pid)
	r := bufio.NewReaderSize(pr.stderr, stderrLineMax)
	var window time.Time
	logged, dropped := 0, 0
	for {
		b, more, err := r.ReadLine()
		if err != nil {
			break
		}
		line := string(b)
		if more {
			line += " [cut]"
		}
		for more && err == nil { // skip the rest of a long line
			_, more, err = r.ReadLine()
		}
		pr.addTail(line)
		if now := time.Now(); now.Sub(window) >= time.Second {
			if dropped > 0 {
				log.Warn("worker: contract process stderr lines not logged", "dropped", dropped)
			}
			window, logged, dropped = now, 0, 0
		}
		if logged++; logged > stderrLinesPerSecond {
			dropped++
			continue
		}
		log.Info("worker: contract process stderr", "line", line)
	}
	if dropped > 0 {
		log.Warn("worker: contract process stderr lines not logged", "dropped", dropped)
	}
}

func (pr *process) addTail(line string) {
	pr.tail = append(pr.tail, line)
	n := 0
	for i := len(pr.tail) - 1; i >= 0; i-- {
		if n += len(pr.tail[i]) + 1; n > stderrTailBytes && i < len(pr.tail)-1 {
			pr.tail = pr.tail[i+1:]
			return
		}
	}
}

func (pr *process) stderrTail() string {
	s := strings.Join(pr.tail, "\n")
	if len(s) > stderrTailBytes {
		s = "..." + s[len(s)-stderrTailBytes:]
	}
	return s
}

// wait waits until the process ends, by itself, killed, or because
// closing was closed (then stdin is closed and the group killed after
// StopGrace). down is called as soon as it has ended. wait then collects
// its last answers, stops its goroutines, fails the calls still in flight
// and returns why it ended.
func (pr *process) wait(closing <-chan struct{}, down func()) error {
	exited := make(chan error, 1)
	go func() { exited <- pr.cmd.Wait() }() // received from below in every case
	var werr error
	byClose := false
	select {
	case werr = <-exited:
	case <-pr.readerDone:
		// Its stdout ended (or broke the protocol, and it is being
		// killed): it should exit now; if it does not, it can answer
		// nothing more, so end it.
		werr = pr.waitOrKill(exited, processDrainTimeout, "closed its stdout but kept running")
	case <-closing:
		byClose = true
		pr.stopOnce.Do(func() { close(pr.stopInput) })
		werr = pr.waitOrKill(exited, pr.pool.cfg.StopGrace, "")
	}
	down()
	killGroup(pr.cmd) // what it left behind
	pr.kill()         // frees exec's context watcher
	t := time.NewTimer(processDrainTimeout)
	select {
	case <-pr.readerDone:
	case <-t.C:
	}
	t.Stop()
	pr.stopOnce.Do(func() { close(pr.stopInput) })
	// Unblock the goroutines should a descendant outside the group hold
	// the pipes open.
	pr.stdout.Close()
	pr.stderr.Close()
	pr.stdin.Close()
	pr.wg.Wait()
	err := pr.endError(werr, byClose)
	pr.fail(err)
	return err
}

// waitOrKill waits up to d for the process to exit, then kills it, with
// reason as a protocol violation unless empty.
func (pr *process) waitOrKill(exited <-chan error, d time.Duration, reason string) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case err := <-exited:
		return err
	case <-t.C:
	}
	if reason != "" {
		pr.breakProtocol(reason)
	}
	pr.kill()
	return <-exited
}

// stop kills a process that never went into service and waits for it.
func (pr *process) stop() {
	pr.kill()
	_ = pr.wait(nil, func() {})
}

func (pr *process) endError(werr error, byClose bool) error {
	pr.mu.Lock()
	broken, kind := pr.broken, pr.kind
	pr.mu.Unlock()
	e := &processError{kind: ErrProcessExited, pid: pr.pid, stderr: pr.stderrTail()}
	switch {
	case broken != "":
		e.kind, e.reason = kind, broken+"; killed"
	case byClose:
		e.kind, e.reason = ErrProcessClosed, "stopped"
	case werr != nil:
		e.reason = werr.Error()
	default:
		e.reason = "exit status 0"
	}
	return e
}

// fail ends every call in flight with err, and makes later ones fail at
// once.
func (pr *process) fail(err error) {
	pr.mu.Lock()
	pr.dead = err
	pending := pr.pending
	pr.pending = nil
	pr.mu.Unlock()
	for _, ch := range pending {
		ch <- answer{err: err}
	}
}
