// Package compare runs MetalLB and barelb, one after the other, in the same
// lab (e2etest/lab: real kube-apiserver, kube-proxy, FRR router, a client on
// the LAN) on the same scenarios, and prints one table with both columns
// and their ratio. It is a benchmark, never a pass/fail test of speed: the
// only failures are a scenario that cannot run at all (no address, no
// answer from the client).
//
// MetalLB is the released controller and speaker `make metallb` builds from
// the Go module proxy (e2etest/tools/metallb pins the version) with the
// CRDs of the same module source. The lab runs them as processes, as their
// manifests would: the environment of their Deployment and DaemonSet
// (METALLB_NODE_NAME, METALLB_HOST, METALLB_ML_BIND_ADDR, …), the
// memberlist Secret mounted as a file, and speaker Pod objects (MetalLB's
// speakers find each other by listing those Pods). barelb runs as the lab
// always runs it. Both get the equivalent configuration: the same pools,
// advertisements and peers, in their own API group.
//
// Sizes come from the environment (BARELB_COMPARE_SERVICES,
// BARELB_COMPARE_ROUNDS); without it the run is a smoke run (a few
// Services, one round of each failover) that `make test` keeps alive.
// `make compare` runs the full size.
package compare
