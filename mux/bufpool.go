package mux

import "sync"

// Request payloads are read into pooled buffers, returned to the pool once
// the handler returned and its answer was queued. Size classes keep a small
// request from pinning a large buffer.
var bufClasses = [...]int{512, 2 << 10, 8 << 10, 32 << 10, MaxFramePayload}

var bufPools [len(bufClasses)]sync.Pool

func getBuf(n int) *[]byte {
	for i, size := range bufClasses {
		if n <= size {
			if pb, ok := bufPools[i].Get().(*[]byte); ok {
				*pb = (*pb)[:n]
				return pb
			}
			b := make([]byte, n, size)
			return &b
		}
	}
	b := make([]byte, n) // larger than any class: not pooled
	return &b
}

func putBuf(pb *[]byte) {
	if pb == nil {
		return
	}
	for i, size := range bufClasses {
		if cap(*pb) == size {
			bufPools[i].Put(pb)
			return
		}
	}
}
