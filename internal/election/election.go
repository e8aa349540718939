package election

import (
	"encoding/binary"
	"hash/fnv"
)

// Node is one node as the election sees it for one address.
type Node struct {
	Name string
	// Alive is true while the node's speaker is a live member (memberlist,
	// or the API's view of node readiness when memberlist cannot form).
	Alive bool
	// Excluded is true for nodes labelled
	// node.kubernetes.io/exclude-from-external-load-balancers or with the
	// NetworkUnavailable condition: never candidates.
	Excluded bool
	// Selected is true when an L2Advertisement covering the address's pool
	// and Service selects the node (its nodeSelectors).
	Selected bool
	// HasEndpoint is true when the node holds a ready endpoint of the
	// Service; it matters only for externalTrafficPolicy Local.
	HasEndpoint bool
	// Preference is the sum of the weights of the preferredNodeSelectors
	// the node matches.
	Preference int
}

// Eligible tells whether the node may announce the address.
func (n Node) Eligible(localTraffic bool) bool {
	return n.Alive && !n.Excluded && n.Selected && (!localTraffic || n.HasEndpoint)
}

// Winner returns the node that announces key, normally the address in
// canonical text form: Services that share an address share its key and so
// its announcer. ok is false when no node is eligible. The order of nodes
// does not matter.
func Winner(key string, nodes []Node, localTraffic bool) (winner string, ok bool) {
	var bestPref int
	var bestHash uint64
	for _, n := range nodes {
		if !n.Eligible(localTraffic) {
			continue
		}
		h := Score(n.Name, key)
		if !ok || n.Preference > bestPref ||
			(n.Preference == bestPref && (h > bestHash || (h == bestHash && n.Name < winner))) {
			winner, bestPref, bestHash, ok = n.Name, n.Preference, h, true
		}
	}
	return winner, ok
}

// Score is the rendezvous hash of a node and a key. It is part of the
// protocol between speakers: every version of barelb must compute the same
// value, so it is built from FNV-1a (fixed by its specification) and the
// SplitMix64 finalizer (which spreads FNV's weak low bits), not from a
// hash whose seed or algorithm may change.
func Score(node, key string) uint64 {
	h := fnv.New64a()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(node)))
	_, _ = h.Write(n[:]) // the length keeps ("ab","c") apart from ("a","bc")
	_, _ = h.Write([]byte(node))
	_, _ = h.Write([]byte(key))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Arbitrate names which of two speakers keeps an address that both
// answer for although neither sees the other (the gossip between them is
// cut, or one has not joined). Both compute it from the same values, the
// address's election key (L2Announcement.Key) and the two node names, so
// they agree without talking, and the loser stops. It is the pairwise
// form of Winner: absent preferences, the winner of the whole cluster
// beats every other node here too, so a partition that heals leaves each
// address where the whole cluster's election puts it.
func Arbitrate(key, a, b string) string {
	ha, hb := Score(a, key), Score(b, key)
	if ha > hb || (ha == hb && a < b) {
		return a
	}
	return b
}
