package mux

import (
	"bufio"
	"bytes"
	"errors"
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

// TestChunksGather gathers messages from chunks read through a bufio
// reader: each chunk lands in a segment of its own, and the whole message
// in a buffer at most a sixteenth larger than itself (no doubling),
// whatever the length of its last chunk.
func TestChunksGather(t *testing.T) {
	for _, n := range []int{MaxFramePayload + 1, 2 * MaxFramePayload, 1<<20 + 100, 3*MaxFramePayload - 1} {
		want := make([]byte, n)
		for i := range want {
			want[i] = byte(i * 7)
		}
		br := bufio.NewReaderSize(bytes.NewReader(want), largeReadBuffer)
		var g chunks
		left := n
		for seq := uint32(0); ; seq++ {
			h := Header{Op: OpStreamIn, ID: 1, Seq: seq, Length: uint32(min(left, MaxFramePayload))}
			if left > MaxFramePayload {
				h.Flags = FlagMore
			}
			if err := g.check(h, 16<<20, "message"); err != nil {
				t.Fatal(err)
			}
			left -= int(h.Length)
			if h.Flags&FlagMore != 0 {
				seg, err := readSeg(br)
				if err != nil {
					t.Fatal(err)
				}
				g.push(seg, nil)
				if g.size() != n-left {
					t.Fatalf("%d bytes gathered, want %d", g.size(), n-left)
				}
				continue
			}
			got, err := g.finish(br, h, getMsg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) || cap(got) > n+n/16 {
				t.Fatalf("message of %d bytes: got %d bytes (cap %d), equal %v", n, len(got), cap(got), bytes.Equal(got, want))
			}
			break
		}
		if len(g.segs) != 0 || g.seq != 0 || g.last.Load() != 0 {
			t.Fatal("chunks not reset after the last chunk")
		}
	}
	// A chunk out of sequence, or one that takes the message over its
	// limit, breaks the protocol; so does a chunk before the last that is
	// not full (ParseHeader).
	var g chunks
	if err := g.check(Header{Seq: 1, Length: 10}, 100, "message"); !errors.Is(err, ErrProtocol) {
		t.Fatalf("chunk out of sequence: %v", err)
	}
	if err := g.check(Header{Length: 101}, 100, "message"); !errors.Is(err, ErrProtocol) {
		t.Fatalf("message over its limit: %v", err)
	}
	short := AppendFrame(nil, Header{Op: OpStreamIn, Flags: FlagMore, ID: 1}, make([]byte, 100))
	if _, err := ParseHeader(short); !errors.Is(err, ErrProtocol) {
		t.Fatalf("a short chunk before the last: %v", err)
	}
}
