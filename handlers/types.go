package handlers

//go:generate go tool msgp -file types.go -io=false

// A map's length comes from the peer, and the generated code allocates the
// map at that size before reading an entry: without a bound, a 10-byte
// message could ask for 2^32 entries and the process would die of it.
//msgp:limit maps:65536

// NoPayload is an empty message, for handlers that take or return nothing.
type NoPayload struct{}

// MSS is a map of strings, a common payload for settings and metadata.
type MSS map[string]string

// Text is a single string.
type Text struct {
	Value string `msg:"v"`
}
