// Package allocator decides which external IP address a LoadBalancer Service
// gets from barelb's IP address pools.
//
// It is the pure bookkeeping core of the controller: it knows the pools, which
// service holds which address, and the rules for handing out and sharing
// addresses. It knows nothing about Kubernetes; the controller translates
// Services and IPAddressPools into the plain values defined here and writes the
// decisions back to the API server.
//
// Every held address is recorded once, in one map from address to holders,
// whatever pools contain it. Pools may therefore overlap without ever handing
// the same address to two services that may not share it.
//
// Handing out an address costs amortized O(log released) and does not grow
// with the number of addresses in use, and memory grows with the number of
// addresses in use rather than with pool size, so that a /64 pool is as cheap
// as a /24. See poolState for how.
//
// An Allocator is not safe for concurrent use: the caller serializes all calls,
// for example by holding a mutex around them. It does no locking itself,
// because the controller already needs one lock around its whole
// read-decide-write sequence.
package allocator
