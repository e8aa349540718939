package l2announcer

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/barelb/barelb/internal/membership"
)

// MemberlistMembers is the speakers' memberlist as the announcer sees it.
//
// Until memberlist has formed (this speaker has seen another member at
// least once), node readiness from the API stands in: every speaker then
// decides from the same view, whereas a speaker that sees only itself
// would announce every address, as would all the others — split brain.
// Once formed, a member missing from memberlist is a dead speaker, even
// where its node still looks Ready.
type MemberlistMembers struct {
	Membership *membership.Membership
	Log        logr.Logger
	// Self is this speaker's node. It counts itself as ready
	// SelfReadyDelay after its metadata says so, as the others do once
	// they hear it.
	Self string
	// SelfReadyDelay is how long after its metadata turned ready this
	// speaker counts itself as ready: about the time the others take to
	// hear it, so that all elect it at about the same moment. A speaker
	// that elected itself at once announced its addresses while the
	// others, which had taken them over during its restart and did not
	// know it ready yet, still answered: two answerers, and clients
	// moved back and forth. Zero: DefaultSelfReadyDelay.
	SelfReadyDelay time.Duration

	mu     sync.Mutex
	formed bool
	// selfReadyAt is when this speaker's metadata was first seen ready;
	// selfTold, whether Forward has asked for a plan since it counts.
	selfReadyAt time.Time
	selfTold    bool
}

// DefaultSelfReadyDelay is MemberlistMembers.SelfReadyDelay's default:
// a few gossip rounds.
const DefaultSelfReadyDelay = 300 * time.Millisecond

// selfReadyLocked tells whether this speaker counts itself as ready now.
// m.mu is held.
func (m *MemberlistMembers) selfReadyLocked(now time.Time) bool {
	if m.Self == "" {
		return true
	}
	if !SpeakerReady(m.Membership.Meta()) {
		return false
	}
	if m.selfReadyAt.IsZero() {
		m.selfReadyAt = now
	}
	delay := m.SelfReadyDelay
	if delay == 0 {
		delay = DefaultSelfReadyDelay
	}
	return now.Sub(m.selfReadyAt) >= delay
}

// Alive names the live members; ok is false while memberlist has not
// formed.
func (m *MemberlistMembers) Alive() (map[string]bool, bool) {
	names := m.Membership.Members()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(names) >= 2 && !m.formed {
		m.formed = true
		m.Log.Info("memberlist formed; using it to tell live speakers", "members", names)
	}
	if !m.formed {
		return nil, false // MembershipWatch says so
	}
	// A speaker that has not read the cluster from the API yet (it
	// started while the API server is away) is a member, but cannot
	// announce: it is not elected until it says it is ready.
	metas := m.Membership.Metadata()
	alive := make(map[string]bool, len(names))
	for _, n := range names {
		if n == m.Self {
			alive[n] = m.selfReadyLocked(time.Now())
			continue
		}
		alive[n] = SpeakerReady(metas[n])
	}
	// A speaker restarting in place keeps its addresses until it is
	// back (or its hold ends): its node forwards meanwhile, and a move
	// there and back would reset every connection in flight.
	for _, n := range m.Membership.Held() {
		alive[n] = true
	}
	return alive, true
}

// selfDue tells, once, that this speaker has come to count itself as
// ready: plans made before did not elect it.
func (m *MemberlistMembers) selfDue() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.selfTold || !m.formed || !m.selfReadyLocked(time.Now()) {
		return false
	}
	m.selfTold = true
	return true
}

// ViewSuspect tells whether this speaker's view of who died is suspect:
// its own memberlist probes fail (membership.Membership.Healthy) and it
// holds no kernel-level evidence of any death (Marked), so the members it
// lost were dropped on missed probes alone, as a speaker cut off from the
// others drops them. A speaker whose peer died in a two-node cluster is
// unhealthy too (nobody vouches for it), but it found the death itself.
func (m *MemberlistMembers) ViewSuspect() bool {
	return !m.Membership.Healthy() && !m.Membership.Marked()
}

// MayAnswer tells whether the speaker of node name, if memberlist here
// lost it, may still answer on the LAN: its node's kernel answers this
// node's echoes and no connect to its memberlist port was refused
// (membership.Membership.KernelUp). Such a speaker is cut off from the
// gossip or hung, not dead.
func (m *MemberlistMembers) MayAnswer(name string) bool { return m.Membership.KernelUp(name) }

// Left tells whether the speaker of node name left memberlist on purpose.
func (m *MemberlistMembers) Left(name string) bool { return m.Membership.Left(name) }

// Formed tells whether memberlist has formed.
func (m *MemberlistMembers) Formed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.formed
}

// NodeReadiness is the speakers' membership without memberlist (the
// speaker's --memberlist=false): every speaker decides from the API's view
// alone (node readiness, and the speakers' Leases where the Reconciler
// has them: see heartbeat.FallbackAlive), the same view for all of them,
// so they elect the same announcers. The price is the one memberlist
// exists for: a dead speaker on a Ready node keeps its addresses,
// unanswered, until its Lease expires.
type NodeReadiness struct{}

// Alive reports no membership (ok false), which makes the announcer take
// node readiness instead, as it does while memberlist has not formed.
func (NodeReadiness) Alive() (map[string]bool, bool) { return nil, false }

// Left is always false: without memberlist no speaker says it leaves.
func (NodeReadiness) Left(string) bool { return false }

// Forward turns membership changes into events for Setup's channel until
// ctx ends.
// It also asks for a plan once this speaker counts itself as ready (see
// SelfReadyDelay).
func (m *MemberlistMembers) Forward(ctx context.Context, out chan<- event.GenericEvent) {
	tick := time.NewTicker(selfReadyPoll)
	defer tick.Stop()
	// The poll exists for one plan: the one after this speaker comes to
	// count itself as ready, which happens once (selfReadyAt stays).
	poll := tick.C
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.Membership.Changes():
		case <-poll:
			if !m.selfDue() {
				continue
			}
			tick.Stop()
			poll = nil
		}
		select {
		case out <- event.GenericEvent{Object: &corev1.Node{}}:
		default: // a recomputation is pending already
		}
	}
}

// selfReadyPoll is how often Forward looks whether this speaker counts
// itself as ready.
const selfReadyPoll = 50 * time.Millisecond

// Peers lists the other nodes' addresses of the family of self, with the
// memberlist port, from the API's Nodes: every node runs a speaker.
func Peers(ctx context.Context, c client.Reader, selfNode string, self netip.Addr, port int) ([]string, error) {
	var nodes corev1.NodeList
	if err := c.List(ctx, &nodes); err != nil {
		return nil, fmt.Errorf("listing Nodes for memberlist peers: %w", err)
	}
	var out []string
	for _, n := range nodes.Items {
		if n.Name == selfNode {
			continue
		}
		for _, a := range n.Status.Addresses {
			ip, err := netip.ParseAddr(a.Address)
			if a.Type != corev1.NodeInternalIP || err != nil || ip.Is4() != self.Is4() {
				continue
			}
			out = append(out, netip.AddrPortFrom(ip, uint16(port)).String())
			break
		}
	}
	sort.Strings(out)
	return out, nil
}
