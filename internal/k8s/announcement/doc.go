// Package announcement is the controller's reconciler of a LoadBalancer
// Service's barelb.io/Announced condition: whether its addresses are
// announced, by which node (layer 2) or to which BGP peers, and when not,
// why not.
//
// It is the condition's only writer, and the speakers stay out of it: the
// reconciler reads what the speakers already report (the ServiceL2Status
// naming the node that answers ARP/NDP, the ServiceBGPStatus objects
// naming each node's peers, and the sessions each speaker's Lease says
// are established) next to the configuration (advertisements covering
// the pool, the nodes they select, a Local Service's ready endpoints).
// Decide makes the verdict on plain values; the reconciler reads, calls
// it and writes the condition only when it changes. Events about a
// Service are gathered for a moment before it is looked at, so that a
// burst of status changes (a failover moving thousands of Services)
// writes each Service once.
package announcement
