package smartcontractpb

// gen.sh builds protoc-gen-go and protoc-gen-go-grpc at the versions pinned in
// go.mod and runs protoc (Debian package protobuf-compiler) with them.
//go:generate sh gen.sh
