// Package v1beta1 holds barelb's configuration API, group barelb.io.
//
// Its field names and meanings follow MetalLB's metallb.io API, so that a
// MetalLB manifest works here after changing only its apiVersion.
// Configuration objects count only in the namespace barelb runs in.
//
// +kubebuilder:object:generate=true
// +groupName=barelb.io
package v1beta1

// AddressRange's CEL rules are written by celgen from a readable
// description; `make check-generated` fails when they are stale.
//go:generate go run ./internal/celgen -file ipaddresspool_types.go
