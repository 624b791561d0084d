package mux

import (
	"io"
	"sync/atomic"
	"testing"
)

// chunkReader returns the next of its chunks on each Read.
type chunkReader struct{ chunks []int }

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), r.chunks[0])
	if r.chunks[0] -= n; r.chunks[0] == 0 {
		r.chunks = r.chunks[1:]
	}
	return n, nil
}

// TestPipeReaderBuffers checks that the reader borrows the large buffer
// while it catches up with big bursts and gives it back after a small one.
func TestPipeReaderBuffers(t *testing.T) {
	var n atomic.Uint64
	pr := newPipeReader(&chunkReader{chunks: []int{100, 5000, 100, 4096}}, &n, nil)
	defer pr.release()
	br := pr.small
	read := func(size int, wantLarge bool, what string) {
		t.Helper()
		br = pr.buffer(br)
		if large := br != pr.small; large != wantLarge || large && br != pr.large {
			t.Fatalf("%s: reading through the large buffer: %v, want %v", what, large, wantLarge)
		}
		if _, err := io.ReadFull(br, make([]byte, size)); err != nil {
			t.Fatal(err)
		}
	}
	read(100, false, "first read")
	read(5000, false, "after a small read")
	read(100, true, "after a burst")
	read(4096, false, "after a small read following a burst")
	if pr.large != nil {
		t.Fatal("large buffer kept after a small read")
	}
	if br = pr.buffer(br); br == pr.small {
		t.Fatal("no large buffer after a read that filled the small one")
	}
	if got := n.Load(); got != 100+5000+100+4096 {
		t.Fatalf("counted %d bytes", got)
	}
}

func TestGrow(t *testing.T) {
	b := grow(nil, 100, 1000)
	if len(b) != 0 || cap(b) != 400 {
		t.Fatalf("new buffer: len %d cap %d, want 0 and %d chunks", len(b), cap(b), firstChunkRoom)
	}
	b = append(b, make([]byte, 400)...)
	b = grow(b, 1, 1000)
	if len(b) != 400 || cap(b) != 800 {
		t.Fatalf("grown buffer: len %d cap %d, want doubled", len(b), cap(b))
	}
	b = grow(b[:800], 100, 1000)
	if cap(b) != 1000 {
		t.Fatalf("cap %d, want the limit", cap(b))
	}
	if b = grow(b[:1000], 10, 1000); cap(b) != 1010 {
		t.Fatalf("cap %d past the limit, want exactly what is needed", cap(b))
	}
	if b = grow(nil, 0, 1000); b == nil {
		t.Fatal("grow(nil, 0) returned nil: an empty message must not read as none")
	}
}
