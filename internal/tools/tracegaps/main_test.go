package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"runtime/trace"
	"slices"
	"strings"
	"testing"
	"time"

	xtrace "golang.org/x/exp/trace"
)

// TestIdleGap traces a program whose only goroutine sleeps, so that every
// P sits idle, and checks that the report counts that time.
func TestIdleGap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "idle.trace")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := trace.Start(f); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		time.Sleep(30 * time.Millisecond)
		done := make(chan bool)
		go func() { done <- true }()
		<-done
	}
	trace.Stop()
	f.Close()

	var out bytes.Buffer
	if err := run(path, &out); err != nil {
		t.Fatal(err)
	}
	t.Log(out.String())
	idle := durationAfter(t, out.String(), `Ps idle: `)
	lost := durationAfter(t, out.String(), `Ps idle while goroutines waited to run: `)
	// Three 30ms sleeps with nothing else to run: at least 60ms of idle P
	// time whatever GOMAXPROCS is, and almost none of it with work waiting.
	if idle < 60*time.Millisecond {
		t.Errorf("idle P time %v, want at least 60ms", idle)
	}
	if lost > idle/2 {
		t.Errorf("idle time with goroutines waiting %v of %v: a sleeping program has nothing waiting", lost, idle)
	}
}

// durationAfter parses the duration that follows prefix at the start of a
// line of s.
func durationAfter(t *testing.T, s, prefix string) time.Duration {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(prefix) + `(\S+) `).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no %q line in:\n%s", prefix, s)
	}
	d, err := time.ParseDuration(m[1])
	if err != nil {
		t.Fatalf("%q: %v", prefix, err)
	}
	return d
}

func TestBadTrace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.trace")
	if err := os.WriteFile(path, []byte("not a trace"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(path, new(bytes.Buffer)); err == nil {
		t.Fatal("a file that is not a trace was read without an error")
	}
	if err := run(filepath.Join(t.TempDir(), "missing"), new(bytes.Buffer)); err == nil {
		t.Fatal("a missing file was read without an error")
	}
}

// TestAccountant feeds the accountant a made-up timeline, in microseconds,
// and checks its sums against ones worked out by hand.
func TestAccountant(t *testing.T) {
	us := func(n int) xtrace.Time { return xtrace.Time(n * 1000) }
	a := newAccountant()
	a.procState(us(0), 0, xtrace.ProcRunning)
	a.procState(us(0), 1, xtrace.ProcRunning)
	a.procState(us(10), 1, xtrace.ProcIdle)     // P1 idle from 10
	a.goState(us(20), 7, xtrace.GoRunnable)     // work waits from 20: lost 20–30
	a.goState(us(20), 8, xtrace.GoRunnable)     // two waiting, one idle P: still 1 lost P
	a.procState(us(30), 1, xtrace.ProcRunning)  // P1 back at 30
	a.goState(us(30), 7, xtrace.GoRunning)      // one still waiting, no P idle
	a.procState(us(40), 0, xtrace.ProcIdle)     // P0 idle from 40, G8 waits: lost 40–50
	a.stopTheWorld(us(50), true)                // a pause 50–70 counts as nothing
	a.stopTheWorld(us(70), false)               // lost again from 70
	a.procState(us(80), 1, xtrace.ProcIdle)     // two idle Ps, one waiting: 1 lost P
	a.goState(us(90), 8, xtrace.GoRunning)      // nothing waits from 90
	a.procState(us(100), 0, xtrace.ProcRunning) // end: P1 idle 80–100 with nothing waiting
	a.goState(us(100), 9, xtrace.GoRunnable)    // a stretch still open at the end
	var out bytes.Buffer
	a.report(&out)
	t.Log(out.String())

	// Idle: P1 10–30 (20), P0 40–50 (10) and 70–100 (30), P1 80–100 (20).
	if want := 80 * time.Microsecond; a.idleTime != want {
		t.Errorf("idle %v, want %v", a.idleTime, want)
	}
	// Lost: 20–30, 40–50, 70–90 (one P each).
	if want := 40 * time.Microsecond; a.lost != want {
		t.Errorf("lost %v, want %v", a.lost, want)
	}
	// Stretches: 20–30, 40–50 (closed by the pause), 70–90, and a zero-long
	// one open at the end; sorted by the report.
	want := []time.Duration{0, 10 * time.Microsecond, 10 * time.Microsecond, 20 * time.Microsecond}
	if !slices.Equal(a.stretches, want) {
		t.Errorf("stretches %v, want %v", a.stretches, want)
	}
	if !strings.Contains(out.String(), ", 2 Ps\n") {
		t.Errorf("report: %s", out.String())
	}
}
