//go:build tools

// Package tools pins the Helm CLI the chart tests run (e2etest/install):
// Debian has no helm package, so `make tools` builds the upstream
// command from the Go module proxy. Its own module keeps Helm's large
// dependency tree out of the product's and the other tools' go.mod.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
