// Package primesim is a stand-in for Dragonchain Prime's smart-contract
// endpoint. It runs a real gRPC server that speaks the bidirectional Run
// stream from package smartcontractpb, so a gateway can be exercised end to
// end without a chain.
//
// What it reproduces from Prime:
//
//   - Metadata checks on every stream: a missing x-chain-id is refused with
//     InvalidArgument "missing chain ID"; a different chain ID, when
//     Config.ChainID is set, with InvalidArgument "chain ID mismatch: the
//     stream's x-chain-id is "X", this chain is "Y""; a wrong x-api-key
//     with Unauthenticated; an unknown x-smart-contract-id with
//     PermissionDenied. DefaultChainID is the chain the demo's gateway
//     names, and the one `gridmesh primesim` serves by default.
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
// exactly once. WaitReport returns the report once n transactions are
// answered and Config.Settle (default 200 ms) has passed since the last
// first answer, so that a duplicate answer arriving shortly after is
// counted. Generate is a load generator producing Dragonchain-shaped
// transactions; GenerateUpTo completes a load begun before a crash.
//
// # State file
//
// By default the books live in memory: a Server that dies takes them
// along, and a new one starts empty. With Config.StatePath they are kept
// in a bbolt file, so that a simulator can crash like Prime (kill -9) and
// be started again on the file:
//
//   - The commit loop writes, at most every Config.CommitInterval (default
//     10 ms) and only when something changed, all changes since the last
//     commit in one transaction (one fsync): new transactions with their
//     requests, delivery counts, answers (counts, time and content of the
//     first). Stream and unexpected-response counts go along with the next
//     commit that has any of those.
//   - A transaction is delivered only once it is written, as a real
//     chain commits a transaction before it invokes a contract; so no
//     crash forgets a transaction that a client may have run. One not yet
//     written when the process dies is lost with it, never delivered, as
//     if never submitted (GenerateUpTo makes new ones in its place).
//   - Answers are written at the first commit once they are
//     Config.LossWindow old (default 0: the next commit). A kill -9 thus
//     loses every answer received in its last LossWindow; those received
//     up to LossWindow + CommitInterval (plus the time a commit takes)
//     before it may be lost too; older ones are kept. Close writes every
//     answer: only a crash loses them.
//   - A Server started on the file delivers again, oldest first, every
//     transaction without a written answer, whether it was delivered
//     before the crash or not, and counts it answered once it is, as if
//     the lost answers had never come. It never reuses a transaction ID
//     (IDs are random version 4 UUIDs) nor a position in the file.
//     Delivery counts are those last written.
//   - An answered transaction is deleted from the file, and from memory,
//     once its first answer is Config.Retention old (default 10 min), its
//     counts folded into totals; so the file holds what is unanswered or
//     recent, whatever the load. An answer to a pruned transaction counts
//     as unexpected.
//
// In memory, every change costs a map update; with a state file, also
// its share of one commit per CommitInterval, done by the commit loop off
// the serving path, and up to CommitInterval of delivery latency.
//
// The full gRPC method path is configurable (Config.MethodPath) because
// Prime's real protobuf package name is not public.
//
// All methods of Server may be called concurrently. New starts the
// commit loop of a state file; Close stops it and waits for it, as for
// every goroutine the Server starts.
package primesim
