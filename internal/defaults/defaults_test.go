package defaults

import (
	"testing"
	"time"
)

func TestSet(t *testing.T) {
	var n int
	Set(&n, 4)
	Set(&n, 5) // set already: kept
	neg := -1
	Set(&neg, 7) // negative is set: the caller rejects it
	var d time.Duration
	Set(&d, time.Second)
	var s string
	Set(&s, "func")
	if n != 4 || neg != -1 || d != time.Second || s != "func" {
		t.Fatalf("n %d, neg %d, d %v, s %q", n, neg, d, s)
	}
}
