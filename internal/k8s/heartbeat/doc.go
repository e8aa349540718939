// Package heartbeat keeps one coordination.k8s.io Lease per speaker in
// barelb's namespace, renewed every few seconds as a kubelet renews its
// node's Lease, and reads the other speakers' Leases.
//
// A Lease says that the speaker of its node runs, how its memberlist
// stands (formed, fallback or off) and its node's MAC addresses. Layer-2
// mode needs that whenever memberlist cannot tell: a speaker without
// memberlist (--memberlist=false, or while it has not formed) elects only
// among nodes whose speaker runs, not every Ready node (a Ready node
// without a speaker would keep its addresses unanswered); a speaker that
// cannot join the others' memberlist (a wrong secret, a blocked port)
// learns from their Leases that they formed one without it, and stands
// aside instead of answering for addresses they answer for; and the MAC
// addresses tell another speaker's claims on the LAN from a foreign
// host's even where memberlist never carried them. It also names the
// node's subnets, which the subnet-aware election reads for a node whose
// memberlist metadata this speaker never saw (its speaker crashed before
// this one started): a crashed speaker's Lease stays.
//
// Freshness is judged by when this speaker saw a Lease's renewTime
// change, on its own clock, as the node lifecycle controller does: clocks
// of different nodes need not agree.
package heartbeat
