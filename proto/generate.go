package smartcontractpb

// internal/protogen compiles smartcontract.proto in pure Go (no protoc
// needed) and runs protoc-gen-go and protoc-gen-go-grpc at the versions
// pinned by go.mod's tool directives, so the output depends on go.mod
// alone.
//go:generate go run ../internal/protogen -plugin go=paths=source_relative -plugin go-grpc=paths=source_relative smartcontract.proto
