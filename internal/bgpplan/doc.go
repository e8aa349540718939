// Package bgpplan decides what one node's speaker advertises in BGP mode:
// which prefixes go to which peer, with which attributes. It is a pure
// function over plain values (config models and small structs), with no
// Kubernetes client and no I/O.
//
// It is a package of its own rather than part of internal/election
// because BGP mode elects nobody: every eligible node advertises every
// address it may (the routers spread traffic by ECMP), so the decision is
// local to one node — filters, aggregation and attribute merging — and
// shares nothing with the rendezvous hashing of layer-2 mode.
package bgpplan
