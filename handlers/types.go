package handlers

//go:generate go tool msgp -file types.go -io=false

// NoPayload is an empty message, for handlers that take or return nothing.
type NoPayload struct{}

// MSS is a map of strings, a common payload for settings and metadata.
type MSS map[string]string

// Text is a single string.
type Text struct {
	Value string `msg:"v"`
}
