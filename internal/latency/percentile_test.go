package latency

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// ms converts whole milliseconds to durations.
func ms(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestPercentilesNoSamples(t *testing.T) {
	for _, samples := range [][]time.Duration{nil, {}} {
		got := Percentiles(samples, 0, 50, 99, 100)
		if want := make([]time.Duration, 4); !slices.Equal(got, want) {
			t.Errorf("Percentiles(%v) = %v, want %v", samples, got, want)
		}
	}
	if got := Percentiles(ms(1, 2, 3)); len(got) != 0 {
		t.Errorf("no percentiles asked: %v", got)
	}
}

func TestPercentilesOneSample(t *testing.T) {
	got := Percentiles(ms(7), 0, 1, 50, 99, 100)
	if want := ms(7, 7, 7, 7, 7); !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestPercentilesHundred: over the samples 1..100, the p-th percentile is p
// (and p0 the minimum, 1).
func TestPercentilesHundred(t *testing.T) {
	s := make([]time.Duration, 100)
	for i := range s {
		s[i] = time.Duration(i + 1)
	}
	ps := make([]int, 101)
	for p := range ps {
		ps[p] = p
	}
	got := Percentiles(s, ps...)
	for p, d := range got {
		if want := time.Duration(max(p, 1)); d != want {
			t.Errorf("p%d = %v, want %v", p, d, want)
		}
	}
}

// TestPercentilesRanks pins the rank at sizes where ⌈p·n/100⌉ is a whole
// number, where a floor-based index would pick the next sample.
func TestPercentilesRanks(t *testing.T) {
	for _, c := range []struct {
		samples []time.Duration
		ps      []int
		want    []time.Duration
	}{
		{ms(10, 20), []int{0, 50, 51, 100}, ms(10, 10, 20, 20)},
		{ms(1, 2, 3), []int{33, 34, 50, 66, 67}, ms(1, 2, 2, 2, 3)},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), []int{10, 11, 50, 90, 91, 99}, ms(1, 2, 5, 9, 10, 10)},
		{ms(5, 5, 5, 9), []int{0, 75, 76, 100}, ms(5, 5, 9, 9)},
	} {
		if got := Percentiles(c.samples, c.ps...); !slices.Equal(got, c.want) {
			t.Errorf("Percentiles(%v, %v) = %v, want %v", c.samples, c.ps, got, c.want)
		}
	}
}

// TestPercentilesDefinition checks every percentile of random samples,
// duplicates included, against the definition: the smallest sample such
// that at least p% of the samples are less than or equal to it.
func TestPercentilesDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ps := make([]int, 101)
	for p := range ps {
		ps[p] = p
	}
	for n := 1; n <= 64; n++ {
		s := make([]time.Duration, n)
		for i := range s {
			s[i] = time.Duration(rng.IntN(20))
		}
		got := Percentiles(s, ps...)
		for p, d := range got {
			if want := byDefinition(s, p); d != want {
				t.Fatalf("n %d, p%d of %v: %v, want %v", n, p, s, d, want)
			}
		}
	}
}

func byDefinition(s []time.Duration, p int) time.Duration {
	best := time.Duration(-1)
	for _, v := range s {
		atMost := 0
		for _, w := range s {
			if w <= v {
				atMost++
			}
		}
		if atMost*100 >= p*len(s) && (best < 0 || v < best) {
			best = v
		}
	}
	return best
}

// TestPercentilesUnsorted: the order of the samples does not matter, and
// the caller's slice is left as it was.
func TestPercentilesUnsorted(t *testing.T) {
	s := ms(40, 10, 50, 30, 20)
	orig := slices.Clone(s)
	got := Percentiles(s, 0, 20, 50, 100)
	if want := ms(10, 10, 30, 50); !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if !slices.Equal(s, orig) {
		t.Errorf("samples modified: %v, was %v", s, orig)
	}
}

func TestPercentilesOutOfRange(t *testing.T) {
	for _, p := range []int{-1, 101} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("p%d accepted", p)
				}
			}()
			Percentiles(ms(1), p)
		}()
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("p101 accepted without samples")
			}
		}()
		Percentiles(nil, 101)
	}()
}

func BenchmarkPercentiles(b *testing.B) {
	s := make([]time.Duration, 1<<16)
	for i := range s {
		s[i] = time.Duration(rand.Int64N(int64(time.Second)))
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = Percentiles(s, 50, 99)
	}
}

func ExamplePercentiles() {
	samples := []time.Duration{
		40 * time.Millisecond, 10 * time.Millisecond, 30 * time.Millisecond,
		20 * time.Millisecond, 900 * time.Millisecond,
	}
	p := Percentiles(samples, 50, 99, 100)
	fmt.Printf("p50 %v, p99 %v, max %v\n", p[0], p[1], p[2])
	// Output: p50 30ms, p99 900ms, max 900ms
}
