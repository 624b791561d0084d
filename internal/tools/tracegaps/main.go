// Command tracegaps reads a Go execution trace and reports how long Ps sat
// idle, and how much of that idle time passed while goroutines waited,
// runnable, for a P (the sum over time of the smaller of the two counts):
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
	var (
		runnable    = map[trace.GoID]bool{}
		idle        = map[trace.ProcID]bool{}
		procs       = map[trace.ProcID]bool{}
		first, last trace.Time
		now         trace.Time
		idleTime    time.Duration // P time spent idle
		lostTime    time.Duration // P time spent idle while a goroutine waited: min(idle Ps, runnable goroutines)
		stretches   []time.Duration
		since       trace.Time // start of the current stretch of lost time; 0 if none
	)
	// advance accounts for the time from now to t in the current state.
	advance := func(t trace.Time) {
		if now != 0 && t > now {
			d := time.Duration(t - now)
			idleTime += d * time.Duration(len(idle))
			lostTime += d * time.Duration(min(len(idle), len(runnable)))
		}
		now = t
	}
	// settle opens or closes a stretch after the state changed.
	settle := func() {
		lost := len(idle) > 0 && len(runnable) > 0
		switch {
		case lost && since == 0:
			since = now
		case !lost && since != 0:
			stretches = append(stretches, time.Duration(now-since))
			since = 0
		}
	}
	for {
		ev, err := r.ReadEvent()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if first == 0 {
			first = ev.Time()
		}
		last = ev.Time()
		if ev.Kind() != trace.EventStateTransition {
			continue
		}
		advance(ev.Time())
		st := ev.StateTransition()
		switch st.Resource.Kind {
		case trace.ResourceGoroutine:
			id := st.Resource.Goroutine()
			_, to := st.Goroutine()
			delete(runnable, id)
			if to == trace.GoRunnable {
				runnable[id] = true
			}
		case trace.ResourceProc:
			p := st.Resource.Proc()
			procs[p] = true
			_, to := st.Proc()
			delete(idle, p)
			if to == trace.ProcIdle {
				idle[p] = true
			}
		}
		settle()
	}
	span := time.Duration(last - first)
	procTime := span * time.Duration(max(1, len(procs)))
	fmt.Fprintf(out, "trace: %v, %d Ps\n", span.Round(time.Millisecond), len(procs))
	fmt.Fprintf(out, "Ps idle: %v (%.1f%% of the Ps' time)\n", idleTime.Round(time.Microsecond), pct(idleTime, procTime))
	fmt.Fprintf(out, "Ps idle while goroutines waited to run: %v (%.1f%% of the Ps' time)\n", lostTime.Round(time.Microsecond), pct(lostTime, procTime))
	report(out, "stretches of it", stretches)
	return nil
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
