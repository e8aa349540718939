// Package membership tells a speaker which speakers are alive.
//
// It wraps hashicorp/memberlist (SWIM with the Lifeguard extensions) tuned
// for a LAN: memberlist itself declares a crashed speaker dead in about a
// second (see LANTiming for the measurements and the trade-off against
// flapping), the fast path drops it on kernel-level evidence (a crashed
// speaker in a millisecond or two through the watch streams, a node cut
// off the network in about 110 ms through the echo checks), and one that
// stops gracefully (Leave) is dropped by the others within one gossip
// interval. The layer-2 election feeds on
// Members and re-runs on Changes.
//
// A member is listed from the moment it is known until it is declared dead
// or has left; a merely suspect member stays listed, since suspicion is the
// window in which a slow but healthy member refutes. A member restarting
// under the same name is listed again as soon as it rejoins: memberlist
// resolves the old and new incarnations.
//
// The fast path marks a member down before memberlist's suspicion ends,
// on kernel-level evidence (its memberlist port refuses a connect, or its
// kernel leaves two SYNs unanswered), and never marks a live one: why, and
// what is left, is in docs/design/membership.md. Watch streams (watch.go)
// and echo checks (echo.go) tell it when to look.
package membership
