// Command tracegaps reads a Go execution trace and reports how long Ps sat
// idle, and how much of that idle time passed while goroutines waited,
// runnable, for a P (the sum over time of the smaller of the two counts,
// stop-the-world pauses left out):
// time a core could have worked, lost to the scheduler's wake-ups. It
// lists the stretches of such time, so that one long stall and many short
// ones tell apart. It is a separate module (it needs golang.org/x/exp/trace),
// used to study the full-mesh benchmark (internal/bench/MESH.md):
//
//	go test -c -o /tmp/bench.test ./internal/bench
//	/tmp/bench.test -test.run '^$' -test.bench 'Mesh/grid/servers=8' -test.benchtime 1s -test.trace /tmp/mesh.trace
//	(cd internal/tools/tracegaps && go run . /tmp/mesh.trace)
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/exp/trace"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: tracegaps TRACE")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tracegaps:", err)
		os.Exit(1)
	}
}

func run(path string, out io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := trace.NewReader(f)
	if err != nil {
		return err
	}
	a := newAccountant()
	for {
		ev, err := r.ReadEvent()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		switch ev.Kind() {
		case trace.EventStateTransition:
			st := ev.StateTransition()
			switch st.Resource.Kind {
			case trace.ResourceGoroutine:
				_, to := st.Goroutine()
				a.goState(ev.Time(), st.Resource.Goroutine(), to)
			case trace.ResourceProc:
				_, to := st.Proc()
				a.procState(ev.Time(), st.Resource.Proc(), to)
			}
		case trace.EventRangeBegin, trace.EventRangeEnd:
			if strings.HasPrefix(ev.Range().Name, "stop-the-world") {
				a.stopTheWorld(ev.Time(), ev.Kind() == trace.EventRangeBegin)
			}
		}
	}
	a.report(out)
	return nil
}

// accountant follows the goroutines' and Ps' states through a trace and
// adds up the Ps' idle time, and the lost part of it: at each moment, the
// smaller of the number of idle Ps and the number of runnable goroutines.
// Stop-the-world pauses, where Ps are stopped with goroutines left
// runnable on purpose, count as neither.
type accountant struct {
	runnable map[trace.GoID]bool
	idle     map[trace.ProcID]bool
	procs    map[trace.ProcID]bool
	stw      int // open stop-the-world ranges

	started          bool
	start, now       trace.Time
	idleTime, lost   time.Duration
	stretches        []time.Duration // stretches of lost time
	inStretch        bool
	stretchStartedAt trace.Time
}

func newAccountant() *accountant {
	return &accountant{runnable: map[trace.GoID]bool{}, idle: map[trace.ProcID]bool{}, procs: map[trace.ProcID]bool{}}
}

// advance accounts for the time from the last event to t in the state
// that held through it.
func (a *accountant) advance(t trace.Time) {
	if !a.started {
		a.started, a.start, a.now = true, t, t
		return
	}
	if t > a.now && a.stw == 0 {
		d := time.Duration(t - a.now)
		a.idleTime += d * time.Duration(len(a.idle))
		a.lost += d * time.Duration(min(len(a.idle), len(a.runnable)))
	}
	a.now = max(a.now, t)
}

// settle opens or closes a stretch of lost time after a change of state.
func (a *accountant) settle() {
	lost := a.stw == 0 && len(a.idle) > 0 && len(a.runnable) > 0
	switch {
	case lost && !a.inStretch:
		a.inStretch, a.stretchStartedAt = true, a.now
	case !lost && a.inStretch:
		a.inStretch = false
		a.stretches = append(a.stretches, time.Duration(a.now-a.stretchStartedAt))
	}
}

func (a *accountant) goState(t trace.Time, id trace.GoID, to trace.GoState) {
	a.advance(t)
	delete(a.runnable, id)
	if to == trace.GoRunnable {
		a.runnable[id] = true
	}
	a.settle()
}

func (a *accountant) procState(t trace.Time, p trace.ProcID, to trace.ProcState) {
	a.advance(t)
	a.procs[p] = true
	delete(a.idle, p)
	if to == trace.ProcIdle {
		a.idle[p] = true
	}
	a.settle()
}

func (a *accountant) stopTheWorld(t trace.Time, begin bool) {
	a.advance(t)
	if begin {
		a.stw++
	} else if a.stw > 0 {
		a.stw--
	}
	a.settle()
}

// report closes a stretch still open at the end and prints the totals,
// over the time from the first state change to the last.
func (a *accountant) report(out io.Writer) {
	if a.inStretch {
		a.inStretch = false
		a.stretches = append(a.stretches, time.Duration(a.now-a.stretchStartedAt))
	}
	span := time.Duration(a.now - a.start)
	procTime := span * time.Duration(max(1, len(a.procs)))
	fmt.Fprintf(out, "trace: %v, %d Ps\n", span.Round(time.Millisecond), len(a.procs))
	fmt.Fprintf(out, "Ps idle: %v (%.1f%% of the Ps' time)\n", a.idleTime.Round(time.Microsecond), pct(a.idleTime, procTime))
	fmt.Fprintf(out, "Ps idle while goroutines waited to run: %v (%.1f%% of the Ps' time)\n", a.lost.Round(time.Microsecond), pct(a.lost, procTime))
	report(out, "stretches of it", a.stretches)
}

func pct(d, of time.Duration) float64 {
	if of <= 0 {
		return 0
	}
	return 100 * float64(d) / float64(of)
}

func report(out io.Writer, name string, ds []time.Duration) {
	if len(ds) == 0 {
		fmt.Fprintf(out, "%s: none\n", name)
		return
	}
	slices.Sort(ds)
	at := func(p int) time.Duration { return ds[min(len(ds)-1, len(ds)*p/100)].Round(time.Microsecond) }
	fmt.Fprintf(out, "%s: %d; p50 %v, p90 %v, p99 %v, max %v\n", name, len(ds), at(50), at(90), at(99), ds[len(ds)-1].Round(time.Microsecond))
}
