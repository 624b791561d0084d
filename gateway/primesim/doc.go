// Package primesim is a stand-in for Dragonchain Prime's smart-contract
// endpoint. It runs a real gRPC server that speaks the bidirectional Run
// stream from package smartcontractpb, so a gateway can be exercised end to
// end without a chain.
//
// What it reproduces from Prime:
//
//   - Metadata checks on every stream: a missing x-chain-id is refused with
//     InvalidArgument "missing chain ID" (and a different chain ID, when
//     Config.ChainID is set, with InvalidArgument too); a wrong x-api-key with
//     Unauthenticated; an unknown x-smart-contract-id with PermissionDenied.
//   - Keepalive enforcement that tolerates client pings every 5 s or slower,
//     also without an active stream, so a client pinging every 10 s is fine.
//   - A backlog per smart contract. Transactions submitted while no stream is
//     live wait in the backlog (logged as "no active gRPC connection") and are
//     sent oldest first once a stream attaches. A transaction stays in the
//     backlog until a response carrying its transaction_id arrives; whatever
//     is still unanswered when a stream ends is sent again on the next one.
//     Delivery is therefore at least once. The backlog is bounded by
//     Config.MaxBacklog unanswered transactions per contract.
//   - One live stream per smart contract. A newer stream replaces the older
//     one: the older stream ends with status Aborted "replaced by a newer
//     stream", and every transaction it left unanswered is delivered again,
//     oldest first, on the newer stream.
//
// Pause and Start simulate a Prime restart: Pause ends every stream with
// Unavailable and stops serving, keeping the books and backlogs; Start
// serves again, on the same address or another.
//
// On top of that it keeps the books a test needs: how often each transaction
// was delivered and answered, and how long the first answer took. Report
// summarises them; Report.OK says whether every transaction was answered
// exactly once. Generate is a load generator producing Dragonchain-shaped
// transactions.
//
// The full gRPC method path is configurable (Config.MethodPath) because
// Prime's real protobuf package name is not public.
package primesim
