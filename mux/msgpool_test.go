package mux

import (
	"testing"
	"unsafe"
)

// RaceEnabled tells the external tests whether the race detector is on.
const RaceEnabled = raceEnabled

func TestMsgClasses(t *testing.T) {
	msgClassesOnce.Do(initMsgClasses)
	if msgClassSizes[0] != minMsgClass {
		t.Fatalf("first class %d, want %d", msgClassSizes[0], minMsgClass)
	}
	for i := 1; i < len(msgClassSizes); i++ {
		prev, c := msgClassSizes[i-1], msgClassSizes[i]
		if c <= prev {
			t.Fatalf("classes not increasing at %d: %d then %d", i, prev, c)
		}
		// A miss allocates the class size: at most a quarter more than
		// asked, and above a frame (a message gathered from chunks) a
		// sixteenth.
		if c > prev+1+(prev+1)/4+8 || prev >= MaxFramePayload && c > prev+1+(prev+1)/16 {
			t.Fatalf("class %d follows %d: too much waste for %d bytes", c, prev, prev+1)
		}
	}
	if last := msgClassSizes[len(msgClassSizes)-1]; last < maxMsgClass {
		t.Fatalf("largest class %d below %d", last, maxMsgClass)
	}
	for _, n := range []int{0, 1, 63, 64, 65, 511, 512, 513, 600, 4096, 32 << 10, 33 << 10, 1 << 20, 1<<20 + 1, maxMsgClass, maxMsgClass + 1} {
		b := getMsg(n)
		if len(b) != n || cap(b) < n {
			t.Fatalf("getMsg(%d): len %d cap %d", n, len(b), cap(b))
		}
	}
}

// TestRecycleReuses checks that a recycled buffer serves a later message
// of a length its capacity covers, whatever that capacity is, and that
// slices outside the classes are ignored.
func TestRecycleReuses(t *testing.T) {
	// capacity is the array's; the slice recycled starts one byte in.
	for _, tc := range []struct{ capacity, n int }{
		{513, 512}, {600, 576}, {641, 600}, {60 << 10, 56 << 10}, {100<<10 + 1, 100 << 10}, {5<<20 + 1, 5 << 20},
	} {
		reused := false
		// The pool may drop an item (it always may; the race detector
		// makes it do so at random): try a few times.
		for range 20 {
			b := make([]byte, 1, tc.capacity)
			b[0] = 42
			Recycle(b[1:]) // a slice that does not start its array still covers its capacity
			got := getMsg(tc.n)
			if len(got) != tc.n || cap(got) < tc.n {
				t.Fatalf("cap %d, getMsg(%d): len %d cap %d", tc.capacity, tc.n, len(got), cap(got))
			}
			if unsafe.SliceData(got) == &b[1:2][0] {
				reused = true
				if b[0] != 42 {
					t.Fatal("a recycled slice's buffer overwrote the byte before it")
				}
				break
			}
		}
		if !reused {
			t.Errorf("a buffer of capacity %d was never reused for %d bytes", tc.capacity-1, tc.n)
		}
	}
	// Slices outside the pool's classes are ignored: they must not panic
	// (nor land in a class, which the loop above would then hand out).
	Recycle(nil)
	Recycle(make([]byte, 10))
	Recycle(make([]byte, 0, 2*maxMsgClass+1))
}

func TestRecycleAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	Recycle(getMsg(512))
	if n := testing.AllocsPerRun(100, func() { Recycle(getMsg(512)) }); n != 0 {
		t.Fatalf("getMsg+Recycle: %v allocations, want 0", n)
	}
}
