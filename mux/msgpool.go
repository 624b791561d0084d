package mux

import (
	"bufio"
	"slices"
	"sync"
	"unsafe"
)

// Messages handed to the caller (responses, stream messages) are read into
// buffers that Recycle may give back. The pool is keyed by size class.
// Up to 32 KiB the classes are the Go allocator's own, measured once at
// first use, so that a buffer allocated on a pool miss with its class as
// capacity costs no more memory than make([]byte, n) would; above that they
// step by a quarter of each power of two up to MaxFramePayload, and by a
// sixteenth above it, so that a message gathered from chunks is held in a
// buffer at most a sixteenth larger than itself. A buffer is filed under the
// largest class its capacity covers and handed out from the smallest class
// that covers the length asked for, so any buffer in class i serves any
// length up to classSizes[i].
//
// The pools hold the address of the buffer's first byte, not a *[]byte:
// an unsafe.Pointer fits in an interface without an allocation, so that
// Recycle itself allocates nothing.
var (
	msgClassesOnce sync.Once
	msgClassSizes  []int
	msgPools       []sync.Pool
)

// Class bounds: below minMsgClass a message is cheaper to allocate than to
// pool; above maxMsgClass buffers are not kept.
const (
	minMsgClass  = 64
	maxMsgClass  = 16 << 20
	smallClasses = 32 << 10 // up to here, the Go allocator's classes
)

func initMsgClasses() {
	// append rounds a new slice's capacity up to its allocation size class.
	for n := minMsgClass; n <= smallClasses; {
		c := cap(append([]byte(nil), make([]byte, n)...))
		msgClassSizes = append(msgClassSizes, c)
		n = c + 1
	}
	for p := smallClasses; p < maxMsgClass; p *= 2 {
		steps := 4
		if p >= MaxFramePayload {
			steps = 16
		}
		for q := 1; q <= steps; q++ {
			if c := p + q*p/steps; c > msgClassSizes[len(msgClassSizes)-1] {
				msgClassSizes = append(msgClassSizes, c)
			}
		}
	}
	msgPools = make([]sync.Pool, len(msgClassSizes))
}

// getMsg returns a buffer of length n for a message the caller will own:
// a recycled one if its class has one, else a new one with its class's
// capacity.
func getMsg(n int) []byte {
	msgClassesOnce.Do(initMsgClasses)
	if n < minMsgClass || n > maxMsgClass {
		return make([]byte, n)
	}
	i, _ := slices.BinarySearch(msgClassSizes, n) // smallest class >= n
	size := msgClassSizes[i]
	if p, ok := msgPools[i].Get().(unsafe.Pointer); ok {
		return unsafe.Slice((*byte)(p), size)[:n]
	}
	return make([]byte, n, size)
}

// Recycle gives b back to the session's buffer pool, so that a later
// message reuses its memory rather than allocating new memory that the
// garbage collector must then reclaim. It is meant for the messages
// Session.Request, Stream.Recv and Stream.Responses return once the caller
// is done with them, and for the input messages a stream handler takes,
// but any slice will do.
//
// After Recycle the caller must not use b, or any slice sharing its memory,
// again: the next message may be read into it. Recycling is optional; a
// message never recycled is reclaimed by the garbage collector as usual.
// Recycle does nothing for slices with less than 64 bytes of capacity or
// more than 32 MiB (twice the largest class).
func Recycle(b []byte) {
	c := cap(b)
	if c < minMsgClass || c > 2*maxMsgClass {
		return
	}
	msgClassesOnce.Do(initMsgClasses)
	i, found := slices.BinarySearch(msgClassSizes, c)
	if !found {
		i-- // the largest class c covers; c >= minMsgClass = the first class
	}
	msgPools[i].Put(unsafe.Pointer(unsafe.SliceData(b[:c])))
}

// readMsg reads an n-byte payload from br into a buffer from getMsg.
func readMsg(br *bufio.Reader, n uint32) ([]byte, error) {
	b := getMsg(int(n))
	if err := readFull(br, b); err != nil {
		return nil, err
	}
	return b, nil
}
