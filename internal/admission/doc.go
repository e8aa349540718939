// Package admission decides what barelb's validating webhook answers for
// rules that span objects: pools that overlap, a pool edit that leaves
// assigned addresses outside the pool, advertisements naming pools or
// peers that do not exist, two BGPPeers that would open the same session
// from one node, and a peer whose password Secret is missing.
//
// Rules about one object alone are the CRDs' (OpenAPI and CEL, see
// api/v1beta1) and are not repeated here. Every function is pure: the
// caller reads the objects (internal/k8s/webhook) and parses them with
// internal/config.
package admission
