// Package election decides which node announces an address in layer-2
// mode. It is a pure function of plain values, so that every speaker, given
// the same view of the cluster, reaches the same answer without talking to
// the others.
//
// The winner is the eligible node with the highest preference (the summed
// weights of the advertisement's preferredNodeSelectors it matches), then
// the highest rendezvous hash of (node, address). Rendezvous hashing spreads
// addresses evenly over nodes and, when a node leaves, moves only the
// addresses that node announced.
package election
