#!/bin/sh
# Regenerates smartcontract.pb.go and smartcontract_grpc.pb.go.
#
# Needs `protoc` on PATH (Debian/Ubuntu: apt-get install protobuf-compiler).
# The Go plugins are built from the versions pinned by the `tool` directives
# in go.mod, so the output depends only on go.mod and the protoc version.
set -eu

cd "$(dirname "$0")"

command -v protoc >/dev/null 2>&1 || {
	echo "gen.sh: protoc not found; install it (apt-get install protobuf-compiler)" >&2
	exit 1
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

go build -o "$tmp/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go
go build -o "$tmp/protoc-gen-go-grpc" google.golang.org/grpc/cmd/protoc-gen-go-grpc

protoc \
	--plugin=protoc-gen-go="$tmp/protoc-gen-go" \
	--plugin=protoc-gen-go-grpc="$tmp/protoc-gen-go-grpc" \
	--go_out=. --go_opt=paths=source_relative \
	--go-grpc_out=. --go-grpc_opt=paths=source_relative \
	-I . \
	smartcontract.proto
