// Command protogen generates Go code from .proto files without protoc: it
// compiles them with github.com/bufbuild/protocompile, a protobuf compiler
// in pure Go, and hands the descriptors to protoc plugins exactly as protoc
// does (a CodeGeneratorRequest on the plugin's stdin, a
// CodeGeneratorResponse on its stdout). The plugins run as Go tools
// ("go tool protoc-gen-NAME"), at the versions go.mod pins, so the output
// depends on go.mod alone and not on what the machine has installed.
//
// Usage, from the directory of the .proto files (proto/generate.go runs it):
//
//	go run ../internal/protogen -plugin go=paths=source_relative -plugin go-grpc=paths=source_relative FILE.proto...
//
// Each -plugin NAME=PARAMETER runs protoc-gen-NAME with that parameter and
// writes the files it returns, relative to the current directory. Imports
// are looked up in the current directory and in the well-known types
// (google/protobuf/*.proto) that protocompile carries.
package main
