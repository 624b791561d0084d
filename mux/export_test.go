package mux

// SetDropHook makes f see how many undelivered messages each cancelled
// stream drops (and recycles), until the returned func is called.
func SetDropHook(f func(n int)) (restore func()) {
	dropHook = f
	return func() { dropHook = nil }
}
