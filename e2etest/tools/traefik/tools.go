//go:build tools

// Package tools pins Traefik, the ingress controller the cluster suite
// (e2etest/cluster) runs behind a barelb LoadBalancer Service: the user's
// everyday scenario. It is built from the released module source on the
// Go module proxy, in its own module because its dependency tree (every
// DNS provider's SDK, tracing exporters, plugins) is far from the
// product's, and because it needs Traefik's own replace directives
// (forks of go-http-auth, mux and minheap) that a require alone does not
// carry.
package tools

import (
	_ "github.com/traefik/traefik/v3/cmd/traefik"
)
