package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"runtime/trace"
	"testing"
	"time"
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
