package defaults

// Set sets *p to v if *p is the zero value of its type; a value already
// set, negative ones included, is left as it is (checking them is the
// caller's business).
func Set[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}
