// Package smartcontractpb holds the protobuf messages and gRPC bindings for the
// Dragonchain Prime smart-contract stream, generated from smartcontract.proto.
//
// Prime's own .proto is not public, so the protobuf package name (and with it
// the full method path) is a best guess. Callers that talk to a real Prime
// should take the method path from configuration, defaulting to
// DefaultRunMethod, and open the stream with grpc.ClientConn.NewStream when it
// differs.
package smartcontractpb

// DefaultRunMethod is the full gRPC method path of SmartContractService.Run as
// declared in smartcontract.proto:
// "/dragonchain.smartcontract.v1.SmartContractService/Run".
const DefaultRunMethod = SmartContractService_Run_FullMethodName
