package election

import (
	"container/heap"
	"hash/fnv"
	"sort"
)

// Balanced placement (docs/design/balanced-placement.md).
//
// Plain rendezvous hashing spreads addresses only statistically: 2 of 3
// addresses on one node happens often, and at 10,000 addresses a node
// carries ±10% of the mean. The plan therefore bounds the load: among
// the elections whose best candidates are the same nodes (a "class":
// the addresses of one advertisement, in the common case), no node wins
// more than ⌈elections/nodes⌉+1 of them.
//
// It does so in two phases, so that a death moves only the dead node's
// addresses and a return moves back only the returner's share:
//
//  1. The owner of every election is chosen as if every candidate were
//     alive: the bounded-load matching of elections to nodes that is
//     stable for the rendezvous scores (no election and node both
//     prefer each other to what they got). It depends only on the
//     cluster's objects, never on memberlist, so all speakers reach it
//     alike even when they see different members — and it is what
//     decides a contest between two speakers (ArbitrateOwned), so that
//     a partition between live nodes settles where the healed plan
//     puts each address.
//  2. An election whose owner is alive goes to its owner. The others
//     ("orphans") are matched the same way among the live candidates,
//     with what room the owners' elections leave under the live bound.
//
// Owners never depend on who is alive, so a death moves only the dead
// node's addresses and orphans of earlier deaths; a return takes back
// only the returner's owned elections (at most its bound).

// ballot is one election: a key and the nodes that may win it.
type ballot struct {
	key   string
	cands []Node
}

// outcome is a ballot's owner (phase 1) and winner (phase 2); empty
// when the ballot has no such node.
type outcome struct {
	owner, winner string
}

// nominal tells whether n may announce the address when it is alive.
// A drained node is not: its addresses get owners elsewhere, so that an
// undrain moves back only its share, as a return does.
func (n Node) nominal() bool { return !n.Excluded && !n.Drained && n.Selected }

// balance elects every ballot.
func balance(ballots []ballot) []outcome {
	out := make([]outcome, len(ballots))
	nameHash := map[string]uint64{}
	hashOf := func(name string) uint64 {
		h, ok := nameHash[name]
		if !ok {
			f := fnv.New64a()
			_, _ = f.Write([]byte(name))
			h = f.Sum64()
			nameHash[name] = h
		}
		return h
	}

	// Phase 1: owners, every candidate counted as alive.
	classes := newClasses()
	for i, b := range ballots {
		classes.add(i, b.cands, Node.nominal, hashOf)
	}
	for _, c := range classes.list {
		m := newMatching(c, len(c.ballots), nil)
		for _, i := range c.ballots {
			m.propose(i, ballots[i].key)
		}
		for node, q := range m.taken {
			for _, e := range *q {
				out[e.ballot].owner = c.nodes[node]
			}
		}
		for _, e := range m.overflow {
			out[e.ballot].owner = c.nodes[e.node]
		}
	}

	// Phase 2: winners. The owner wins while alive; orphans share the
	// room the owners' elections leave among the live candidates.
	classes = newClasses()
	alive := func(n Node) bool { return n.Eligible(false) }
	for i, b := range ballots {
		classes.add(i, b.cands, alive, hashOf)
	}
	for _, c := range classes.list {
		var orphans []int
		used := make([]int, len(c.nodes))
		index := make(map[string]int, len(c.nodes))
		for k, n := range c.nodes {
			index[n] = k
		}
		for _, i := range c.ballots {
			k, ok := index[out[i].owner]
			if !ok {
				orphans = append(orphans, i)
				continue
			}
			out[i].winner = out[i].owner
			used[k]++
		}
		if len(orphans) == 0 {
			continue
		}
		// When the room left is short (classes that merge as nodes die),
		// the last orphans overflow, and which are last depends on the
		// order of proposals: the keys' order, the same for everyone.
		sort.Slice(orphans, func(a, b int) bool { return ballots[orphans[a]].key < ballots[orphans[b]].key })
		m := newMatching(c, len(c.ballots), used)
		for _, i := range orphans {
			m.propose(i, ballots[i].key)
		}
		for node, q := range m.taken {
			for _, e := range *q {
				out[e.ballot].winner = c.nodes[node]
			}
		}
		for _, e := range m.overflow {
			out[e.ballot].winner = c.nodes[e.node]
		}
	}
	return out
}

// class is the ballots whose best candidates (those the filter keeps,
// with the highest preference among them) are the same nodes.
type class struct {
	nodes []string
	// seeds are the nodes' scoreSeed.
	seeds   []uint64
	ballots []int
}

type classID struct {
	hash  uint64
	count int
}

type classes struct {
	byID map[classID]*class
	list []*class // in the order first seen: the result does not depend on it
	// bySlice remembers the class of a candidates slice: the plan hands
	// every address of Services with the same advertisements the same
	// slice, and at 250 nodes hashing it for each is most of the work.
	bySlice map[sliceID]*class
}

type sliceID struct {
	first *Node
	n     int
}

func newClasses() *classes {
	return &classes{byID: map[classID]*class{}, bySlice: map[sliceID]*class{}}
}

// add puts ballot i into the class of its best candidates that keep
// passes. A ballot with none is in no class.
func (cs *classes) add(i int, cands []Node, keep func(Node) bool, hashOf func(string) uint64) {
	if len(cands) == 0 {
		return
	}
	sid := sliceID{&cands[0], len(cands)}
	if c, ok := cs.bySlice[sid]; ok {
		if c != nil {
			c.ballots = append(c.ballots, i)
		}
		return
	}
	c := cs.classOf(cands, keep, hashOf)
	cs.bySlice[sid] = c
	if c != nil {
		c.ballots = append(c.ballots, i)
	}
}

// classOf is the class of cands' best candidates, nil for none.
func (cs *classes) classOf(cands []Node, keep func(Node) bool, hashOf func(string) uint64) *class {
	best, found := 0, false
	for _, n := range cands {
		if keep(n) && (!found || n.Preference > best) {
			best, found = n.Preference, true
		}
	}
	if !found {
		return nil
	}
	// The set's identity is order-independent: a XOR of its names'
	// hashes and its size.
	var id classID
	for _, n := range cands {
		if keep(n) && n.Preference == best {
			id.hash ^= hashOf(n.Name)
			id.count++
		}
	}
	c := cs.byID[id]
	if c == nil {
		c = &class{nodes: make([]string, 0, id.count), seeds: make([]uint64, 0, id.count)}
		for _, n := range cands {
			if keep(n) && n.Preference == best {
				c.nodes = append(c.nodes, n.Name)
				c.seeds = append(c.seeds, scoreSeed(n.Name))
			}
		}
		cs.byID[id] = c
		cs.list = append(cs.list, c)
	}
	return c
}

// matching assigns ballots to nodes, each node taking at most its room,
// by deferred acceptance: a ballot proposes to nodes from the highest
// rendezvous score down; a node over its room drops its lowest-scored
// ballot, which proposes further. The result is the one stable matching
// of the scores, whatever the order of proposals, so every speaker finds
// the same. A ballot every node has turned down (no room left anywhere,
// which the bound's +1 makes impossible in a single class) goes to its
// first choice beyond the bound.
type matching struct {
	nodes    []string
	seeds    []uint64
	room     []int
	taken    []*entries
	overflow []entry
}

type entry struct {
	ballot int
	node   int
	score  uint64
	key    string
}

// entries is a min-heap in the order ballots are preferred: lowest
// score first, the larger name (the worse) first on a tie.
type entries []entry

func (h entries) Len() int { return len(h) }
func (h entries) Less(i, j int) bool {
	if h[i].score != h[j].score {
		return h[i].score < h[j].score
	}
	return h[i].key > h[j].key
}
func (h entries) Swap(i, j int)       { h[i], h[j] = h[j], h[i] }
func (h *entries) Push(x interface{}) { *h = append(*h, x.(entry)) }
func (h *entries) Pop() interface{} {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// newMatching makes a matching of ballots (their number in the class)
// over nodes, used[k] places of node k being taken already (nil: none).
// A node's room is ⌈ballots/nodes⌉+1 minus what is used.
func newMatching(c *class, ballots int, used []int) *matching {
	nodes := c.nodes
	limit := (ballots+len(nodes)-1)/len(nodes) + 1
	m := &matching{nodes: nodes, seeds: c.seeds, room: make([]int, len(nodes)), taken: make([]*entries, len(nodes))}
	for k := range nodes {
		m.room[k] = limit
		if used != nil {
			m.room[k] = max(0, limit-used[k])
		}
		m.taken[k] = &entries{}
	}
	return m
}

// next is the node ballot key ranks right below (score, name) — the
// first when after is false — and its score; ok is false past the last.
func (m *matching) next(key string, after bool, score uint64, name string) (node int, s uint64, ok bool) {
	node = -1
	for k, n := range m.nodes {
		h := scoreFrom(m.seeds[k], key)
		if after && (h > score || (h == score && n <= name)) {
			continue // ranked at or above the last proposal
		}
		if node < 0 || h > s || (h == s && n < m.nodes[node]) {
			node, s = k, h
		}
	}
	return node, s, node >= 0
}

func (m *matching) propose(ballot int, key string) {
	k, s, _ := m.next(key, false, 0, "")
	first := entry{ballot: ballot, node: k, score: s, key: key}
	e := first
	for {
		// A node's heap compares by score, then by key: two ballots
		// with equal scores on one node are ordered by their keys
		// (smaller wins), which every speaker computes alike.
		q := m.taken[e.node]
		heap.Push(q, e)
		if q.Len() <= m.room[e.node] {
			return
		}
		dropped := heap.Pop(q).(entry)
		name := m.nodes[dropped.node]
		k, s, ok := m.next(dropped.key, true, dropped.score, name)
		if !ok {
			// Turned down everywhere: its first choice takes it anyway.
			k, s, _ = m.next(dropped.key, false, 0, "")
			m.overflow = append(m.overflow, entry{ballot: dropped.ballot, node: k, score: s, key: dropped.key})
			return
		}
		e = entry{ballot: dropped.ballot, node: k, score: s, key: dropped.key}
	}
}
