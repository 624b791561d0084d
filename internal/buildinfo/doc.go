// Package buildinfo reads what the Go toolchain recorded in the running
// binary (runtime/debug.ReadBuildInfo): the main module's version, the
// VCS revision and the Go version. `gridmesh version` prints it and
// gridmesh_build_info exports it. Its functions may be called
// concurrently.
package buildinfo
