package testutil_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/internal/testutil"
)

func TestWaitUntil(t *testing.T) {
	var n atomic.Int32
	go func() {
		time.Sleep(10 * time.Millisecond)
		n.Store(1)
	}()
	testutil.WaitUntil(t, "n to be set", func() bool { return n.Load() == 1 })
}

func TestLogBuffer(t *testing.T) {
	var l testutil.LogBuffer
	l.Logger().Debug("hello", "k", "v")
	if s := l.String(); !strings.Contains(s, "msg=hello k=v") {
		t.Fatalf("log %q", s)
	}
}

func TestContextEnds(t *testing.T) {
	ctx := testutil.Context(t)
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > testutil.Timeout {
		t.Fatalf("deadline %v %v", dl, ok)
	}
}

func TestLogBufferTail(t *testing.T) {
	var l testutil.LogBuffer
	l.Write([]byte("0123456789"))
	if got := l.Tail(4); got != "...6789" {
		t.Fatalf("Tail(4) = %q", got)
	}
	if got := l.Tail(20); got != "0123456789" {
		t.Fatalf("Tail(20) = %q", got)
	}
}
