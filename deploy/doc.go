// Package deploy holds what ships gridmesh: the container image
// (Dockerfile), the Kubernetes manifests (kubernetes/) and the systemd
// units (systemd/), and the tests that check them against the binary. It
// is a module of its own, so that the Kubernetes API types its tests
// decode the manifests into stay out of the main module.
//
// The tests:
//
//   - decode every manifest strictly into the Kubernetes API types
//     (unknown fields fail), and cross-check them with what the binary
//     accepts and serves: the probe paths and ports, the environment
//     the configuration names, the configuration keys (loaded by the
//     command's own loader), the hosts against the StatefulSets' pods,
//     the grace periods against the drain timeouts;
//   - run the gateway and the workers as processes with exactly the
//     manifests' arguments, environment and mounted files (a small
//     kubelet: each pod in a chroot holding the image's layout, as its
//     user, on a loopback address of its own) against a Prime simulator,
//     and check that a load is answered exactly once;
//   - check the Dockerfile (multi-stage, static binary, non-root user,
//     distroless base) and, where podman is installed, build an image from
//     its final stage and run `gridmesh version` in it;
//   - check the systemd units' commands and stop timeouts.
package deploy
