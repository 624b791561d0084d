// Package wire holds what a gateway and its workers say to each other over
// the grid, and nothing else: the two handlers a worker serves (HandlerInfo,
// HandlerRun), their typed calls, and the msgp types they carry (TxRequest,
// TxResult, WorkerInfo).
//
//	Prime ──▶ gateway ──[wire.TxRequest]──grid──▶ worker ──▶ contract
//	Prime ◀── gateway ◀──[wire.TxResult]──grid─── worker ◀──
//
// Both sides import it; neither imports the other. A change here is a change
// of the protocol between gateway and worker versions: add fields, never
// renumber the handlers or change a field's msgp key.
//
// The types are plain values. Their generated decoders bound every map
// length that comes from the peer (//msgp:limit), so a few bytes cannot
// make a worker allocate without limit.
package wire
