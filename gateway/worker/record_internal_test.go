package worker

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gridmesh/gridmesh/gateway/wire"
)

func finishRun(t *testing.T, r *record, id string, resultBytes int, at time.Time) {
	t.Helper()
	rn, fresh := r.start(id)
	if !fresh {
		t.Fatalf("%s: not fresh", id)
	}
	r.finish(rn, &wire.TxResult{ID: id, ResultJSON: strings.Repeat("x", resultBytes)}, at)
}

func TestRecordBounds(t *testing.T) {
	now := time.Now()
	t.Run("runs", func(t *testing.T) {
		r := newRecord(3, 1<<20, time.Hour)
		for _, id := range []string{"a", "b", "c", "d"} {
			finishRun(t, r, id, 10, now)
		}
		if ids := r.ids(now); slices.Contains(ids, "a") || len(ids) != 3 {
			t.Fatalf("ids %v, want the newest 3", ids)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		r := newRecord(100, 1000, time.Hour)
		for _, id := range []string{"a", "b", "c"} {
			finishRun(t, r, id, 400, now)
		}
		runs, bytes := r.size()
		if runs != 2 || bytes > 1000 {
			t.Fatalf("%d runs, %d bytes; want 2 runs within 1000 bytes", runs, bytes)
		}
	})
	t.Run("age", func(t *testing.T) {
		r := newRecord(100, 1<<20, time.Minute)
		finishRun(t, r, "old", 1, now.Add(-2*time.Minute))
		finishRun(t, r, "new", 1, now)
		if ids := r.ids(now); !slices.Equal(ids, []string{"new"}) {
			t.Fatalf("ids %v, want [new]", ids)
		}
	})
	t.Run("running runs stay", func(t *testing.T) {
		r := newRecord(1, 1, time.Nanosecond)
		running, _ := r.start("running")
		finishRun(t, r, "done", 100, now)
		if ids := r.ids(now.Add(time.Hour)); !slices.Equal(ids, []string{"running"}) {
			t.Fatalf("ids %v, want [running]", ids)
		}
		if rn, fresh := r.start("running"); fresh || rn != running {
			t.Fatal("a running run was not found again")
		}
	})
	t.Run("forgotten", func(t *testing.T) {
		r := newRecord(10, 1<<20, time.Hour)
		rn, _ := r.start("x")
		r.forget(rn, &wire.TxResult{ID: "x", Draining: true})
		if _, fresh := r.start("x"); !fresh {
			t.Fatal("a forgotten run is still recorded")
		}
	})
	t.Run("compaction keeps order", func(t *testing.T) {
		r := newRecord(10, 1<<30, time.Hour)
		for i := range 1000 {
			finishRun(t, r, string(rune('A'+i%26))+strings.Repeat("-", i), 1, now)
		}
		if runs, _ := r.size(); runs != 10 || len(r.done)-r.head != 10 || len(r.done) > 200 {
			t.Fatalf("%d runs, done %d (head %d)", runs, len(r.done), r.head)
		}
	})
}
