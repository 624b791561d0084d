// Package latency summarises latency samples by their percentiles, the one
// definition that gridmesh's reports share: the primesim report, the
// benchmark results of package bench and the latency lines the stream tests
// log.
//
// A percentile here is the nearest-rank percentile: the p-th percentile of
// n samples is the sample of rank ⌈p·n/100⌉ (counting from 1) in ascending
// order, and rank 1 for p = 0. It is always one of the samples, never an
// interpolation; at least p% of the samples are less than or equal to it.
// So p0 is the minimum, p100 the maximum, and p50 of an even number of
// samples the lower of the two middle ones.
//
// The functions keep no state and may be called concurrently; they never
// modify the caller's slice.
package latency
