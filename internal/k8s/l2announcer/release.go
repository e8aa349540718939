package l2announcer

import (
	"net/netip"
	"sync"
	"time"

	"github.com/barelb/barelb/internal/election"
	"github.com/barelb/barelb/internal/layer2"
)

// Planned maintenance moves addresses make-before-break. When a plan
// takes an address from this node and gives it to another live node
// because of a drain — this node is drained, or the new announcer was
// drained in the previous plan and is back (undrain) — this node goes on
// answering for the address until it hears the new announcer's
// gratuitous announcement on the link (a peer claim), at most
// releaseOverlap; only then does it withdraw. The successor announces
// from the same change of the Node (every speaker watches it), so the
// LAN hears the new MAC before the old one goes quiet, and a client that
// asks in between gets an answer from one of the two, both of which
// forward to the Service. The same holds when the new announcer is a
// speaker that was away in the previous plan and is back (a restart
// during an API-server outage, a node that rebooted): this node took
// its addresses over meanwhile, and keeps answering until the returning
// speaker, which may need a moment after its plan to answer, is heard.
// Other moves (a death, an advertisement edited) withdraw at once.

// releaseOverlap bounds how long a drained address is answered after the
// plan moved it, should the successor's announcement not be heard (it
// answers on another segment, say). It is below inViewGrace: the
// successor never takes the overlap for a contest.
const releaseOverlap = time.Second

// claimMemory is how long a successor's claim heard before this node's
// plan caught up (it reacted first) still ends the overlap at once.
const claimMemory = 3 * time.Second

// release is an address this node answers on for a hand-over.
type release struct {
	// successor is the node the plan gives the address to.
	successor string
	// ifaces are the interfaces this node answers on.
	ifaces []string
	until  time.Time
}

// heardFrom is a peer claim on one of this node's addresses.
type heardFrom struct {
	node string
	at   time.Time
}

// releaseInput is what planReleases decides from.
type releaseInput struct {
	// self is this node; selfDrained, whether it is drained now.
	self        string
	selfDrained bool
	// wasDrained are the nodes drained in the previous plan; returned,
	// the live speakers that were not alive in it.
	wasDrained, returned map[string]bool
	// alive are the live speakers (the plan's view).
	alive map[string]bool
	// answering is what this node answered for until now; want, what
	// the new plan gives it.
	answering, want map[netip.Addr][]string
	// announcer is each address's node in the new plan.
	announcer map[netip.Addr]string
	// pending are the hand-overs under way.
	pending map[netip.Addr]release
	// heard are the recent peer claims on this node's addresses.
	heard map[netip.Addr]heardFrom
	now   time.Time
}

// planReleases decides which addresses this node answers on for a
// hand-over: a pure function, see the comment at the top of this file.
func planReleases(in releaseInput) map[netip.Addr]release {
	out := map[netip.Addr]release{}
	for ip, ifaces := range in.answering {
		if _, kept := in.want[ip]; kept {
			continue
		}
		successor := in.announcer[ip]
		if successor == "" || successor == in.self || !in.alive[successor] {
			continue // gone, or a failover: nothing to overlap with
		}
		if h, ok := in.heard[ip]; ok && h.node == successor && in.now.Sub(h.at) < claimMemory {
			continue // the successor announces: stop now
		}
		if p, ok := in.pending[ip]; ok {
			if p.successor == successor && in.now.Before(p.until) {
				out[ip] = p
			}
			continue
		}
		if in.selfDrained || in.wasDrained[successor] || in.returned[successor] {
			out[ip] = release{successor: successor, ifaces: ifaces, until: in.now.Add(releaseOverlap)}
		}
	}
	return out
}

// releases is the reconciler's record of hand-overs and of the claims
// that end them; its own lock, since claims arrive while plans run.
type releases struct {
	mu      sync.Mutex
	pending map[netip.Addr]release
	heard   map[netip.Addr]heardFrom
	// drained are the nodes drained in the last plan; alive, its live
	// speakers (nil before the first plan).
	drained, alive map[string]bool
}

// claimed notes a peer claim on one of this node's addresses; it tells
// whether it ends a hand-over (the reconciler must then plan again).
func (r *releases) claimed(c layer2.PeerClaim, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.heard == nil {
		r.heard = map[netip.Addr]heardFrom{}
	}
	r.heard[c.Address] = heardFrom{node: c.Node, at: now}
	p, ok := r.pending[c.Address]
	return ok && p.successor == c.Node
}

// next computes the hand-overs for a new plan (see planReleases), keeps
// them, and returns them with how soon the first one ends (0: none).
func (r *releases) next(self string, nodes []election.L2Node, alive map[string]bool, answering, want map[netip.Addr][]string,
	plan []election.L2Announcement, now time.Time) (map[netip.Addr]release, time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	drained := map[string]bool{}
	for _, n := range nodes {
		if n.Drained {
			drained[n.Name] = true
		}
	}
	var returned map[string]bool
	if r.alive != nil {
		for name, up := range alive {
			if up && !r.alive[name] {
				if returned == nil {
					returned = map[string]bool{}
				}
				returned[name] = true
			}
		}
	}
	in := releaseInput{self: self, selfDrained: drained[self], wasDrained: r.drained, returned: returned, alive: alive,
		answering: answering, want: want, pending: r.pending, heard: r.heard, now: now}
	// Only the addresses this node loses need their new announcer.
	for ip := range answering {
		if _, kept := want[ip]; !kept {
			if in.announcer == nil {
				in.announcer = map[netip.Addr]string{}
			}
			in.announcer[ip] = ""
		}
	}
	if in.announcer != nil {
		for _, a := range plan {
			if _, lost := in.announcer[a.Address]; lost {
				in.announcer[a.Address] = a.Node
			}
		}
	}
	r.pending = planReleases(in)
	r.drained, r.alive = drained, alive
	for ip, h := range r.heard {
		if now.Sub(h.at) >= claimMemory {
			delete(r.heard, ip)
		}
	}
	var first time.Duration
	for _, p := range r.pending {
		if d := p.until.Sub(now); first == 0 || d < first {
			first = max(d, time.Millisecond)
		}
	}
	return r.pending, first
}
