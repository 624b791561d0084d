package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gridmesh/gridmesh/internal/latency"
)

// DefaultSamples is the default number of latency samples [Run] keeps.
const DefaultSamples = 1 << 16

// A Load describes a closed-loop workload: Callers goroutines each issue
// one call of PayloadSize bytes at a time, back to back.
type Load struct {
	PayloadSize int
	Callers     int // at least 1

	// The run ends after Ops calls in total if Ops > 0, else after Duration.
	Ops      int
	Duration time.Duration

	// Samples bounds the number of latency samples kept, spread evenly
	// over the callers (DefaultSamples if 0). When a caller makes more
	// calls than its share, its samples are a uniform reservoir sample.
	Samples int
}

// Result summarises a run.
type Result struct {
	Ops       int64         // calls completed
	Duration  time.Duration // wall time of the run
	OpsPerSec float64
	P50, P99  time.Duration // latency percentiles of the sampled calls

	// AllocsPerOp and BytesPerOp are the heap allocations of the whole
	// process during the run, per op: both ends of the connection when
	// client and server run in this process, as in every baseline here.
	AllocsPerOp, BytesPerOp float64

	// CPUPerOp is the CPU time (user and system) of the whole process
	// during the run, per op; CPUUse the CPU time per wall time (2.0: two
	// cores busy). Both are 0 where the process's CPU time is not known.
	CPUPerOp time.Duration
	CPUUse   float64

	// RunqP99 is the 99th percentile of the time goroutines of the whole
	// process waited, runnable, before the scheduler ran them, during the
	// run (runtime/metrics' /sched/latencies, bucketed: the bucket's upper
	// bound). Calls that wait while CPU is left idle show here.
	RunqP99 time.Duration
}

func (r *Result) setRate() {
	if r.Duration > 0 {
		r.OpsPerSec = float64(r.Ops) / r.Duration.Seconds()
	}
}

func (r *Result) setAllocs(before, after memStats) {
	if r.Ops > 0 {
		r.AllocsPerOp = float64(after.mallocs-before.mallocs) / float64(r.Ops)
		r.BytesPerOp = float64(after.totalAlloc-before.totalAlloc) / float64(r.Ops)
	}
}

func (r *Result) setCPU(cpu time.Duration) {
	if r.Ops > 0 && cpu > 0 {
		r.CPUPerOp = cpu / time.Duration(r.Ops)
		r.CPUUse = cpu.Seconds() / r.Duration.Seconds()
	}
}

func (r Result) String() string {
	return fmt.Sprintf("%d ops in %v: %.0f ops/s, p50 %v, p99 %v, %.1f allocs/op, %.0f B/op, %v CPU/op (%.0f%% CPU), run queue p99 %v",
		r.Ops, r.Duration.Round(time.Millisecond), r.OpsPerSec, r.P50, r.P99, r.AllocsPerOp, r.BytesPerOp, r.CPUPerOp, 100*r.CPUUse, r.RunqP99)
}

// Run runs the closed-loop workload l against c. Apart from what c itself
// allocates, the calls allocate nothing. Run stops at the first failed call
// (or when ctx is done) and returns its error along with the result so far;
// a response whose length differs from the request's is an error.
func Run(ctx context.Context, c Caller, l Load) (Result, error) {
	if l.Callers < 1 {
		return Result{}, errors.New("bench: Load.Callers must be at least 1")
	}
	if l.Ops <= 0 && l.Duration <= 0 {
		return Result{}, errors.New("bench: Load needs Ops or Duration")
	}
	if l.PayloadSize < 0 {
		return Result{}, errors.New("bench: negative Load.PayloadSize")
	}
	samples := l.Samples
	if samples <= 0 {
		samples = DefaultSamples
	}
	perCaller := max(1, samples/l.Callers)
	if l.Ops > 0 {
		perCaller = min(perCaller, (l.Ops+l.Callers-1)/l.Callers)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	payload := make([]byte, l.PayloadSize)
	for i := range payload {
		payload[i] = byte(i)
	}
	var (
		remaining = int64(l.Ops)
		ops       atomic.Int64
		errOnce   sync.Once
		firstErr  error
		wg        sync.WaitGroup
		lat       = make([][]time.Duration, l.Callers)
		recycle   = recycler(c)
	)
	m0 := readMem()
	cpu0 := cpuTime()
	sched0 := readSched()
	start := time.Now()
	deadline := start.Add(l.Duration)
	for i := range l.Callers {
		lat[i] = make([]time.Duration, 0, perCaller)
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
			s := lat[seed][:0]
			var n int64
			defer func() {
				lat[seed] = s
				ops.Add(n)
			}()
			for {
				if l.Ops > 0 {
					if atomic.AddInt64(&remaining, -1) < 0 {
						return
					}
				}
				t0 := time.Now()
				if l.Ops <= 0 && !t0.Before(deadline) {
					return
				}
				resp, err := c.Call(ctx, payload)
				if err == nil && len(resp) != len(payload) {
					err = fmt.Errorf("bench: response of %d bytes to a request of %d", len(resp), len(payload))
				}
				if err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				recycle(resp)
				d := time.Since(t0)
				n++
				if len(s) < cap(s) {
					s = append(s, d)
				} else if j := rng.Int64N(n); j < int64(len(s)) {
					s[j] = d // reservoir sampling
				}
			}
		}(uint64(i))
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	sched1 := readSched()
	m1 := readMem()

	r := Result{Ops: ops.Load(), Duration: elapsed, RunqP99: runqPercentile(sched0, sched1, 99)}
	r.setRate()
	r.setAllocs(m0, m1)
	r.setCPU(cpu)
	p := latency.Percentiles(slices.Concat(lat...), 50, 99)
	r.P50, r.P99 = p[0], p[1]
	return r, firstErr
}
