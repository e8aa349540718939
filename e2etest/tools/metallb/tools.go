//go:build tools

// Package tools pins MetalLB, the implementation `make compare` measures
// barelb against (e2etest/compare): its controller and speaker are built
// from the released module source on the Go module proxy. Its own module
// keeps MetalLB's dependency tree (FRR-k8s, docker test helpers, an older
// client-go) out of the product's and the other tools' go.mod.
package tools

import (
	_ "go.universe.tf/metallb/controller"
	_ "go.universe.tf/metallb/speaker"
)
