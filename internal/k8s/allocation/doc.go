// Package allocation is the controller's Kubernetes glue: it reconciles
// LoadBalancer Services (which addresses they get) and IPAddressPools (their
// status). The decisions themselves are made by internal/allocator and
// internal/config on plain values; this package reads objects, calls them
// and writes the outcome once.
package allocation
