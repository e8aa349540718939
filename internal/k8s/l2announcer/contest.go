package l2announcer

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/barelb/barelb/internal/election"
	"github.com/barelb/barelb/internal/layer2"
)

// Two speakers answering for one address outside a hand-over means that
// their views of the cluster differ: memberlist between them is cut (a
// firewall on the memberlist port, a wrong secret) while the LAN is up,
// and each side elects among the members it sees. The LAN tells: each
// hears the other's gratuitous announcements and answers. A claim by a
// speaker this node's memberlist has lost (not one that left: it answers
// on for its hand-over) is settled by election.ArbitrateOwned, which both
// sides compute alike from the plan's owner of the address: the loser
// yields (its responder stops answering and watches until the winner
// goes quiet), the winner announces again so that neighbours point at
// it. Between live nodes the pairwise winner is the node the whole
// cluster elects, so nothing moves when the partition heals. A speaker this node still sees as a member is left to the
// election, which settles within a gossip round.
//
// Each speaker heard that way is reported once: a log line naming both
// sides, a Warning Event on this Node and on the Services of the
// contested addresses, the partitioned_speakers gauge; and a Normal Event
// once memberlist sees it again or it has not been heard for
// contestForget.

// Event reasons of contests between speakers.
const (
	// ReasonSpeakerPartition: a speaker memberlist has lost answers on
	// the LAN for an address this node announces.
	ReasonSpeakerPartition = "SpeakerPartition"
	// ReasonSpeakerPartitionHealed: that speaker is a member again, or no
	// longer heard.
	ReasonSpeakerPartitionHealed = "SpeakerPartitionHealed"
)

const (
	// contestForget is how long a contested speaker that memberlist does
	// not see again must go unheard before the partition is taken as
	// over (it died, or the addresses moved).
	contestForget = 30 * time.Second
	// defendEvery bounds how often this node announces again an address
	// it keeps against a contesting speaker.
	defendEvery = time.Second
	// contestCheck is how often the reconciler looks at the contests
	// while there are any.
	contestCheck = 2 * time.Second
	// maxContestedListed bounds the addresses remembered (and named in
	// Events) per contesting speaker.
	maxContestedListed = 16
)

// planView is what the last plan decided, for the peer-claim path, which
// must not wait for a plan: the members it was made with, this node's
// addresses with their interfaces, and their election keys.
type planView struct {
	alive map[string]bool
	// answering is this node's part of the plan (r.answering; never
	// modified once stored).
	answering map[netip.Addr][]string
	// keys are the election keys of the addresses whose key is not
	// their own (a dual-stack Service's second address, shared ones).
	keys map[netip.Addr]netip.Addr
	// owners are the plan's owners (election.L2Announcement.Owner) of
	// this node's addresses that another node owns (or none does).
	owners map[netip.Addr]string
}

// owner is the plan's owner of ip, one of this node's addresses.
func (v *planView) owner(ip netip.Addr, self string) string {
	if o, ok := v.owners[ip]; ok {
		return o
	}
	return self
}

func (v *planView) key(ip netip.Addr) netip.Addr {
	if k, ok := v.keys[ip]; ok {
		return k
	}
	return ip
}

// contestedPeer is a speaker heard claiming addresses of this node
// although memberlist has lost it.
type contestedPeer struct {
	// last is when it was last heard (or seen renewing its Lease).
	last time.Time
	// addresses contested, kept or yielded (at most maxContestedListed),
	// and whether their Services were told.
	addresses map[netip.Addr]bool
	// reported: the partition was told (log, Node Event).
	reported bool
	// listed: memberlist here lists that speaker (they disagree all the
	// same, for longer than inViewGrace).
	listed bool
}

// contests is the reconciler's record of contested addresses; its own
// lock, since claims arrive while plans run.
type contests struct {
	mu    sync.Mutex
	peers map[string]*contestedPeer
	// yieldedTo names the speaker each yielded address was left to.
	yieldedTo map[netip.Addr]string
	// defended is when an address was last announced again against a
	// contesting speaker.
	defended map[netip.Addr]time.Time
	// inView are recent claims by speakers that memberlist still listed,
	// or that had just left: a partition is often heard on the LAN (the
	// other side's take-over) before memberlist here notices it, and a
	// speaker may come back from a restart where memberlist here cannot
	// hear it; the link is asked again who answers (toCheck, lostClaims),
	// and a speaker still answering then is contested.
	inView map[netip.Addr]heardClaim
}

// heardClaim is a claim kept for later: first is when that speaker first
// claimed the address; checked, when the link was last asked about it.
type heardClaim struct {
	claim   layer2.PeerClaim
	first   time.Time
	checked time.Time
}

const (
	// inViewMemory is how long a claim by a speaker still listed is kept
	// for the moment memberlist loses it: longer than memberlist takes
	// to declare a cut-off member gone, even from the cut-off side.
	inViewMemory = 15 * time.Second
	// inViewGrace is how long two speakers that list each other may both
	// answer for an address before it is settled as if they did not:
	// the election settles a hand-over within a gossip round or two, and
	// a speaker cut off from memberlist may take seconds to notice.
	// After it, the link is asked (Responder.Check) and a speaker still
	// answering is contested.
	inViewGrace = 1200 * time.Millisecond
)

// rememberInView keeps a claim by a listed speaker (or one that just
// left); it tells whether that speaker has claimed the address for longer
// than inViewGrace, and whether the claim is new (the reconciler must
// then look again soon: see toCheck).
func (c *contests) rememberInView(claim layer2.PeerClaim, now time.Time) (overdue, isNew bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inView == nil {
		c.inView = map[netip.Addr]heardClaim{}
	}
	h, ok := c.inView[claim.Address]
	if ok && h.claim.Node == claim.Node && now.Sub(h.first) <= inViewMemory {
		h.claim = claim
		c.inView[claim.Address] = h
		return now.Sub(h.first) >= inViewGrace, false
	}
	c.inView[claim.Address] = heardClaim{claim: claim, first: now}
	return false, true
}

// toCheck returns the addresses of remembered claims past inViewGrace
// whose link was not asked in the last inViewGrace, and notes that it is
// asked now: a speaker that goes on answering is heard again every
// inViewGrace while the claim is remembered.
func (c *contests) toCheck(now time.Time) []netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []netip.Addr
	for ip, h := range c.inView {
		if now.Sub(h.first) >= inViewGrace && now.Sub(h.checked) >= inViewGrace {
			h.checked = now
			c.inView[ip] = h
			out = append(out, ip)
		}
	}
	return out
}

// lostClaims returns, and forgets, the remembered claims of speakers
// memberlist no longer lists and that did not leave on purpose (those are
// asked about again once their hand-over is over; see toCheck); it drops
// the old ones.
func (c *contests) lostClaims(alive map[string]bool, left func(string) bool, now time.Time) []layer2.PeerClaim {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []layer2.PeerClaim
	for ip, h := range c.inView {
		switch {
		case now.Sub(h.first) > inViewMemory:
			delete(c.inView, ip)
		case !listed(alive, h.claim.Node) && !left(h.claim.Node):
			out = append(out, h.claim)
			delete(c.inView, ip)
		}
	}
	return out
}

// record notes a contest with node over ip; it tells whether the
// reconciler has something new to report.
func (c *contests) record(node string, ip netip.Addr, yielded, listed bool, now time.Time) (news bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, news := c.peerLocked(node, now)
	p.listed = listed
	if _, known := p.addresses[ip]; !known && len(p.addresses) < maxContestedListed {
		p.addresses[ip] = false // not told yet
		news = true
	}
	if yielded {
		c.yieldedTo[ip] = node
	}
	return news
}

// defendDue tells whether ip may be announced again now.
func (c *contests) defendDue(ip netip.Addr, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.defended == nil {
		c.defended = map[netip.Addr]time.Time{}
	}
	if last, ok := c.defended[ip]; ok && now.Sub(last) < defendEvery {
		return false
	}
	c.defended[ip] = now
	return true
}

// HandlePeerClaim takes a responder's report of another speaker's claim
// on an address this node announces (wire it to
// layer2.Options.OnPeerClaim) and settles it with election.ArbitrateOwned.
func (r *Reconciler) HandlePeerClaim(c layer2.PeerClaim) {
	view := r.view.Load()
	if view == nil || c.Node == r.Node {
		return
	}
	if r.releases.claimed(c, time.Now()) {
		// The successor of an address handed over announces it.
		r.wake()
		return
	}
	if r.Members.Left(c.Node) {
		// A hand-over ends it; should that speaker go on answering past
		// its hand-over (it came back where memberlist here cannot hear
		// it: another secret), the link, asked again, says so.
		if _, ok := view.answering[c.Address]; ok {
			if _, isNew := r.contests.rememberInView(c, time.Now()); isNew {
				r.wake()
			}
		}
		return
	}
	if listed(view.alive, c.Node) || r.listedNow(c.Node) {
		// The election settles it (a speaker memberlist lists again,
		// after a restart say, is heard announcing before the plan here
		// counts it), unless memberlist here is about to
		// lose that speaker, or the two disagree for longer than a
		// hand-over takes (see contests.inView).
		if _, ok := view.answering[c.Address]; !ok {
			return
		}
		overdue, isNew := r.contests.rememberInView(c, time.Now())
		if isNew {
			r.wake()
		}
		if !overdue {
			return
		}
	}
	names, ok := view.answering[c.Address]
	if !ok {
		return // not this node's any more: withdrawn already
	}
	now := time.Now()
	keep := election.ArbitrateOwned(view.key(c.Address).String(), view.owner(c.Address, r.Node), r.Node, c.Node) == r.Node
	yielded := false
	for _, name := range names {
		resp, err := r.Network.Responder(context.Background(), name, r)
		if err != nil {
			r.Log.Error(err, "settling a contested address", "address", c.Address.String())
			continue
		}
		switch {
		case keep && c.Answering && r.contests.defendDue(c.Address, now):
			resp.Reannounce(c.Address)
		case !keep:
			yielded = resp.Yield(c.Address) || yielded
		}
	}
	if metrics := r.Observer.metrics(); metrics != nil && (keep && c.Answering || yielded) {
		outcome := "kept"
		if yielded {
			outcome = "yielded"
		}
		metrics.AddressContests.WithLabelValues(outcome).Inc()
	}
	if yielded {
		r.Log.Info("another speaker, which memberlist has lost, answers for an address this node announces; it keeps the address, this node stops answering it",
			"address", c.Address.String(), "speakerNode", c.Node, "mac", c.MAC.String())
	}
	if r.contests.record(c.Node, c.Address, !keep, listed(view.alive, c.Node), now) || yielded {
		r.wake()
	}
}

// listedNow tells whether memberlist lists node now, whatever the last
// plan was made with.
func (r *Reconciler) listedNow(node string) bool {
	alive, ok := r.Members.Alive()
	return ok && listed(alive, node)
}

// checkLeases finds the speakers that memberlist here has lost although
// they go on renewing their Leases: the gossip between them and this node
// is cut, whether or not they contest an address (a speaker that
// announces nothing contests none). A speaker that died stops renewing:
// only a renewal seen after memberlist lost it counts. It returns how soon
// to look again while such a speaker may still show.
func (r *Reconciler) checkLeases(ctx context.Context, alive map[string]bool, now time.Time) (time.Duration, error) {
	if r.Speakers == nil {
		return 0, nil
	}
	running, err := r.Speakers.Running(ctx, now)
	if err != nil {
		return 0, err
	}
	if r.lostAt == nil {
		r.lostAt = map[string]time.Time{}
	}
	for node := range r.lostAt {
		if listed(alive, node) {
			delete(r.lostAt, node)
		}
	}
	again := time.Duration(0)
	for node, sp := range running {
		if listed(alive, node) || node == r.Node || r.Members.Left(node) {
			continue
		}
		lost, ok := r.lostAt[node]
		if !ok {
			lost = now
			r.lostAt[node] = lost
		}
		if sp.RenewedAt.After(lost) {
			r.contests.recordRunning(node, now)
		}
		again = contestCheck
	}
	return again, nil
}

// recordRunning notes a speaker memberlist lost that still runs.
func (c *contests) recordRunning(node string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.peerLocked(node, now)
}

// peerLocked returns the record of a contesting speaker, made now when
// there was none (isNew), heard now. c.mu is held.
func (c *contests) peerLocked(node string, now time.Time) (p *contestedPeer, isNew bool) {
	if c.peers == nil {
		c.peers, c.yieldedTo, c.defended = map[string]*contestedPeer{}, map[netip.Addr]string{}, map[netip.Addr]time.Time{}
	}
	if p = c.peers[node]; p == nil {
		p, isNew = &contestedPeer{addresses: map[netip.Addr]bool{}}, true
		c.peers[node] = p
	}
	p.last = now
	return p, isNew
}

// settleContests runs with each plan: it answers again the yielded
// addresses whose speaker memberlist sees again (the election decides
// them now) and forgets those no longer planned or answered again, then
// tells what is new about contesting speakers. It returns how soon to
// look again (0: no contest left).
func (r *Reconciler) settleContests(ctx context.Context, in *inputs, alive map[string]bool, want map[netip.Addr][]string, servicesOf map[netip.Addr][]string) (time.Duration, error) {
	c := &r.contests
	now := time.Now()
	// A speaker memberlist lost may have died (then nothing answers) or
	// be cut off (then it answers): the link is asked, and an answer
	// comes back as a claim, settled then. Replaying the old claim
	// instead would make this node yield to a dead speaker.
	check := func(ip netip.Addr) {
		for _, name := range want[ip] {
			if resp, err := r.Network.Responder(ctx, name, r); err == nil {
				resp.Check(ip)
			}
		}
	}
	for _, claim := range c.lostClaims(alive, r.Members.Left, now) {
		check(claim.Address)
	}
	for _, ip := range c.toCheck(now) {
		check(ip)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.peers) == 0 && len(c.yieldedTo) == 0 {
		if len(c.inView) > 0 {
			return inViewGrace / 4, nil
		}
		return 0, nil
	}
	for ip, node := range c.yieldedTo {
		names, planned := want[ip]
		stillYielded := false
		for _, name := range names {
			resp, err := r.Network.Responder(ctx, name, r)
			if err != nil {
				return 0, err
			}
			if alive[node] {
				resp.Resume(ip)
			}
			stillYielded = stillYielded || resp.Yielded(ip)
		}
		if !planned || !stillYielded {
			delete(c.yieldedTo, ip)
		}
	}
	for ip := range c.defended {
		if _, planned := want[ip]; !planned {
			delete(c.defended, ip)
		}
	}

	members := make([]string, 0, len(alive))
	for name := range alive {
		members = append(members, name)
	}
	sort.Strings(members)
	nodes := make([]string, 0, len(c.peers))
	for node := range c.peers {
		nodes = append(nodes, node)
	}
	sort.Strings(nodes)
	for _, node := range nodes {
		p := c.peers[node]
		holds := false
		for _, to := range c.yieldedTo {
			holds = holds || to == node
		}
		switch {
		case (listed(alive, node) && !p.listed) || (!holds && now.Sub(p.last) > contestForget):
			delete(c.peers, node)
			if !p.reported {
				continue
			}
			why := "memberlist sees it again"
			if !listed(alive, node) || p.listed {
				why = fmt.Sprintf("it has not been heard for %s", contestForget)
			}
			r.Log.Info("partition between speakers over", "speakerNode", node, "why", why, "members", members)
			r.Recorder.Eventf(nodeRef(r.Node), corev1.EventTypeNormal, ReasonSpeakerPartitionHealed,
				"the speaker of node %q no longer contests addresses with this node: %s", node, why)
			for ip, told := range p.addresses {
				if !told {
					continue
				}
				for _, key := range servicesOf[ip] {
					if svc := in.byKey[key]; svc != nil {
						r.Recorder.Eventf(svc.Ref(), corev1.EventTypeNormal, ReasonSpeakerPartitionHealed,
							"nodes %q and %q no longer both answer for address %s: %s", r.Node, node, ip, why)
					}
				}
			}
		default:
			r.reportContest(in, node, p, members, servicesOf)
		}
	}
	if metrics := r.Observer.metrics(); metrics != nil {
		metrics.PartitionedSpeakers.Set(float64(len(c.peers)))
	}
	switch {
	case len(c.inView) > 0:
		return inViewGrace / 4, nil
	case len(c.peers) == 0 && len(c.yieldedTo) == 0:
		return 0, nil
	}
	return contestCheck, nil
}

// reportContest tells of a contesting speaker what is new: the partition
// (a log line, a Warning Event on this Node) once, and each contested
// address once to its Services. r.contests.mu is held.
func (r *Reconciler) reportContest(in *inputs, node string, p *contestedPeer, members []string, servicesOf map[netip.Addr][]string) {
	if !p.reported {
		p.reported = true
		addrs := sortedAddrs(p.addresses)
		if len(addrs) == 0 {
			r.Log.Info("PARTITION: a speaker that memberlist has lost still runs (it renews its Lease); the memberlist gossip between them is cut",
				"thisSide", members, "otherSide", node)
			r.Recorder.Eventf(nodeRef(r.Node), corev1.EventTypeWarning, ReasonSpeakerPartition,
				"the speaker of node %q still runs (it renews its Lease), but memberlist on this node sees only %s: the memberlist gossip between them (TCP and UDP on the memberlist port, 7946 by default) is cut; addresses both answer for are kept by one of them",
				node, strings.Join(members, ", "))
			return
		}
		if p.listed {
			r.Log.Info("CLASH: another speaker answers on the LAN for addresses this node announces, and has for longer than a hand-over takes, although memberlist lists both: their views of the cluster differ",
				"thisSide", members, "otherSide", node, "addresses", addrs)
			r.Recorder.Eventf(nodeRef(r.Node), corev1.EventTypeWarning, ReasonSpeakerPartition,
				"the speaker of node %q answers on the LAN for %s, as this node does, although memberlist lists both (%s): their views of the cluster differ (a one-way gossip cut?); one node keeps each address, the other stops answering it",
				node, strings.Join(addrs, ", "), strings.Join(members, ", "))
		} else {
			r.Log.Info("PARTITION: a speaker that memberlist has lost answers on the LAN for addresses this node announces; the memberlist gossip between them is cut while the LAN is up",
				"thisSide", members, "otherSide", node, "addresses", addrs)
			r.Recorder.Eventf(nodeRef(r.Node), corev1.EventTypeWarning, ReasonSpeakerPartition,
				"the speaker of node %q answers on the LAN for %s, but memberlist on this node sees only %s: the memberlist gossip between them (TCP and UDP on the memberlist port, 7946 by default) is cut while the LAN is up; one node keeps each address, the other stops answering it",
				node, strings.Join(addrs, ", "), strings.Join(members, ", "))
		}
	}
	for ip, told := range p.addresses {
		if told {
			continue
		}
		p.addresses[ip] = true
		keeper := r.Node
		if r.contests.yieldedTo[ip] == node {
			keeper = node
		}
		for _, key := range servicesOf[ip] {
			if svc := in.byKey[key]; svc != nil {
				r.Recorder.Eventf(svc.Ref(), corev1.EventTypeWarning, ReasonSpeakerPartition,
					"nodes %q and %q both answered for address %s: the speakers' memberlist gossip is cut; node %q keeps it",
					r.Node, node, ip, keeper)
			}
		}
	}
}

// listed tells whether memberlist lists node as a member, elected or not
// (a member that has not read the cluster yet is in the map as false; see
// MemberlistMembers.Alive).
func listed(alive map[string]bool, node string) bool {
	_, ok := alive[node]
	return ok
}

func sortedAddrs(set map[netip.Addr]bool) []string {
	ips := make([]netip.Addr, 0, len(set))
	for ip := range set {
		ips = append(ips, ip)
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}
