package mux_test

import (
	"testing"

	"github.com/gridmesh/gridmesh/handlers"
	"github.com/gridmesh/gridmesh/mux"
	"github.com/tinylib/msgp/msgp"
)

// The header format was chosen by these two benchmarks: the fixed 24-byte
// header against the same fields as a msgp tuple (an array of 7 values),
// each encoded and decoded once per op.

var sinkHeader mux.Header

func BenchmarkHeaderFixed(b *testing.B) {
	h := mux.Header{Op: mux.OpRequest, Handler: 12, ID: 123456789, Deadline: 5000}
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = mux.AppendFrame(buf[:0], h, nil)
		got, err := mux.ParseHeader(buf)
		if err != nil {
			b.Fatal(err)
		}
		sinkHeader = got
	}
	b.ReportMetric(float64(len(buf)), "bytes/header")
}

func BenchmarkHeaderMsgpTuple(b *testing.B) {
	h := mux.Header{Op: mux.OpRequest, Handler: 12, ID: 123456789, Deadline: 5000}
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = msgp.AppendArrayHeader(buf[:0], 7)
		buf = msgp.AppendUint8(buf, uint8(h.Op))
		buf = msgp.AppendUint8(buf, h.Flags)
		buf = msgp.AppendUint16(buf, uint16(h.Handler))
		buf = msgp.AppendUint64(buf, h.ID)
		buf = msgp.AppendUint32(buf, h.Seq)
		buf = msgp.AppendUint32(buf, h.Deadline)
		buf = msgp.AppendUint32(buf, h.Length)
		n := len(buf)
		var got mux.Header
		sz, p, err := msgp.ReadArrayHeaderBytes(buf)
		if err != nil || sz != 7 {
			b.Fatal(err)
		}
		var op, fl uint8
		var hd uint16
		op, p, _ = msgp.ReadUint8Bytes(p)
		fl, p, _ = msgp.ReadUint8Bytes(p)
		hd, p, _ = msgp.ReadUint16Bytes(p)
		got.ID, p, _ = msgp.ReadUint64Bytes(p)
		got.Seq, p, _ = msgp.ReadUint32Bytes(p)
		got.Deadline, p, _ = msgp.ReadUint32Bytes(p)
		got.Length, _, err = msgp.ReadUint32Bytes(p)
		if err != nil {
			b.Fatal(err)
		}
		got.Op, got.Flags, got.Handler = mux.Op(op), fl, handlers.HandlerID(hd)
		sinkHeader = got
		buf = buf[:n]
	}
	b.ReportMetric(float64(len(buf)), "bytes/header")
}
