package election

import (
	"encoding/binary"
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
	// Drained is true for a node under planned maintenance (the
	// barelb.io/drain label, see kubectl barelb drain): it is elected
	// only when no other candidate is (PlanL2's last resort), so that
	// draining the last node that may announce an address leaves it
	// announced instead of dark.
	Drained bool
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
	return n.Alive && !n.Excluded && !n.Drained && n.Selected && (!localTraffic || n.HasEndpoint)
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
	return scoreFrom(scoreSeed(node), key)
}

// FNV-1a's parameters (64 bits).
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// scoreSeed is FNV-1a's state after a node's part of Score: computed once
// per node, it spares the balancing, which scores every node for every
// address, half the work.
func scoreSeed(node string) uint64 {
	h := uint64(fnvOffset)
	// The length keeps ("ab","c") apart from ("a","bc").
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(node)))
	for _, c := range n {
		h = (h ^ uint64(c)) * fnvPrime
	}
	for i := 0; i < len(node); i++ {
		h = (h ^ uint64(node[i])) * fnvPrime
	}
	return h
}

// scoreFrom finishes Score from a node's seed.
func scoreFrom(seed uint64, key string) uint64 {
	x := seed
	for i := 0; i < len(key); i++ {
		x = (x ^ uint64(key[i])) * fnvPrime
	}
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// ArbitrateOwned names which of two speakers keeps an address that both
// answer for although neither sees the other, given the address's owner
// in the plan (L2Announcement.Owner): the owner, when it is one of the
// two, else the winner of Arbitrate. Both speakers compute the owner
// from the cluster's objects alone (never from memberlist), so they
// agree; and since the plan of a cluster whose candidates are all alive
// puts every address on its owner, a partition between live nodes that
// heals leaves each address where the whole cluster's election puts it,
// bounded load and preferences included.
func ArbitrateOwned(key, owner, a, b string) string {
	switch owner {
	case "":
	case a:
		return a
	case b:
		return b
	}
	return Arbitrate(key, a, b)
}

// Arbitrate names which of two speakers keeps an address that both
// answer for although neither sees the other (the gossip between them is
// cut, or one has not joined). Both compute it from the same values, the
// address's election key (L2Announcement.Key) and the two node names, so
// they agree without talking, and the loser stops. It is the pairwise
// form of Winner (rendezvous alone): the plan's balancing can put an
// address elsewhere than its rendezvous winner, so contests between
// speakers use ArbitrateOwned, which falls back to this for addresses
// whose owner is neither side.
func Arbitrate(key, a, b string) string {
	ha, hb := Score(a, key), Score(b, key)
	if ha > hb || (ha == hb && a < b) {
		return a
	}
	return b
}
