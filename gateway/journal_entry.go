package gateway

import "github.com/gridmesh/gridmesh/gateway/wire"

//go:generate go tool msgp -file journal_entry.go -io=false -unexported

// journalEntry is a result as the journal stores it.
type journalEntry struct {
	Result wire.TxResult `msg:"r"`
	Done   int64         `msg:"t"` // when the result was recorded, Unix nanoseconds
	Sent   bool          `msg:"s"` // sent to Prime (marked asynchronously)
}
