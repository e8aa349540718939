package admission

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"go4.org/netipx"

	"github.com/barelb/barelb/internal/config"
)

// MaxNamesShown bounds how many objects a warning lists by name; the count
// is always exact.
const MaxNamesShown = 5

// Verdict is the webhook's answer: denied when Denials is not empty,
// allowed with Warnings otherwise (warnings are shown by kubectl).
type Verdict struct {
	Denials  []string
	Warnings []string
}

// Allowed tells whether the object may be written.
func (v Verdict) Allowed() bool { return len(v.Denials) == 0 }

// Assignment is a Service holding addresses from a pool (the controller's
// barelb.io/ip-allocated-from-pool annotation names the pool).
type Assignment struct {
	// Service is "namespace/name".
	Service   string
	Addresses []netip.Addr
}

// CheckPool judges a pool being created or changed. old is the pool before
// the change (nil on create); others are the other pools of barelb's
// namespace (the pool itself, by name, is skipped); assigned are the
// Services that hold addresses from this pool now.
//
// A pool that shares an address with another is denied: the address would
// belong to two pools, and which one hands it out would depend on the
// order they are tried. An overlap the pool already had before the change
// (made before the webhook ran) is only a warning, so that it does not
// block unrelated edits of the pool or the edit that fixes it. A change
// that leaves assigned addresses outside the pool is allowed with a
// warning, because shrinking a pool is a legitimate operation; those
// Services are then moved to new addresses.
func CheckPool(pool, old *config.Pool, others []*config.Pool, assigned []Assignment) Verdict {
	var v Verdict
	for _, other := range sortedPools(others) {
		if other.Name == pool.Name || other.Set == nil || !pool.Set.Overlaps(other.Set) {
			continue
		}
		msg := fmt.Sprintf("addresses overlap IPAddressPool %q on %s; an address may belong to one pool only",
			other.Name, describeSet(intersect(pool.Set, other.Set)))
		if old != nil && old.Set != nil && old.Set.Overlaps(other.Set) {
			v.Warnings = append(v.Warnings, msg+" (the overlap predates this change)")
			continue
		}
		v.Denials = append(v.Denials, msg)
	}
	var outside []string
	for _, a := range sortedAssignments(assigned) {
		var lost []string
		for _, ip := range a.Addresses {
			if !pool.Set.Contains(ip) {
				lost = append(lost, ip.String())
			}
		}
		if len(lost) > 0 {
			outside = append(outside, fmt.Sprintf("%s (%s)", a.Service, strings.Join(lost, ", ")))
		}
	}
	if len(outside) > 0 {
		v.Warnings = append(v.Warnings, fmt.Sprintf("%d %s addresses from this pool that the new addresses do not contain; %s moved to new addresses: %s",
			len(outside), plural(len(outside), "Service holds", "Services hold"), plural(len(outside), "it will be", "they will be"), listSome(outside)))
	}
	return v
}

// CheckAdvertisement judges an L2Advertisement or a BGPAdvertisement:
// pools lists the pool names it names (spec.ipAddressPools) and peers the
// peer names (spec.peers, BGP only); poolExists and peerExists hold the
// names that exist in barelb's namespace.
//
// A missing name is a warning, not a denial: applying a folder of
// manifests may create the advertisement before the pool, and the
// advertisement starts to count as soon as the pool exists.
func CheckAdvertisement(pools, peers []string, poolExists, peerExists map[string]bool) Verdict {
	var v Verdict
	if missing := missingNames(pools, poolExists); len(missing) > 0 {
		v.Warnings = append(v.Warnings, fmt.Sprintf("ipAddressPools names %s that %s not exist in this namespace; nothing is announced for %s until %s created",
			listAll("IPAddressPool", missing), plural(len(missing), "does", "do"), plural(len(missing), "it", "them"), plural(len(missing), "it is", "they are")))
	}
	if missing := missingNames(peers, peerExists); len(missing) > 0 {
		v.Warnings = append(v.Warnings, fmt.Sprintf("peers names %s that %s not exist in this namespace; nothing is advertised to %s until %s created",
			listAll("BGPPeer", missing), plural(len(missing), "does", "do"), plural(len(missing), "it", "them"), plural(len(missing), "it is", "they are")))
	}
	return v
}

// CheckBGPPeer judges a BGPPeer being created or changed against the other
// peers of barelb's namespace (the peer itself, by name, is skipped). old
// is the peer before the change (nil on create): a conflict it already
// had is only a warning, as for pools.
// secretExists tells whether its passwordSecret exists; it is ignored when
// the peer names none.
//
// Two peers for the same session (address or interface, and port) are
// denied when some node is certain to be chosen by both, since a node
// opens one session per peer address: when either selects every node, or
// both have an identical selector. When their selectors merely could both
// match one node (say rack=a and zone=1), the answer is a warning, since
// whether such a node exists is up to the cluster's labels.
//
// A missing password Secret is a warning: `kubectl apply -f` of a folder
// may create the peer before the Secret, and the session is opened once
// the Secret exists.
func CheckBGPPeer(peer, old *config.BGPPeer, others []*config.BGPPeer, secretExists bool) Verdict {
	var v Verdict
	for _, other := range sortedPeers(others) {
		if other.Name == peer.Name || sessionOf(other) != sessionOf(peer) {
			continue
		}
		switch why, certain := nodesInCommon(peer, other); {
		case why == "":
		case certain && old != nil && sessionOf(old) == sessionOf(other) && certainlyShared(old, other):
			v.Warnings = append(v.Warnings, fmt.Sprintf("BGPPeer %q is also for %s, and %s; a node opens one session per peer, so one of them is never used (the conflict predates this change)",
				other.Name, sessionOf(peer), why))
		case certain:
			v.Denials = append(v.Denials, fmt.Sprintf("BGPPeer %q is also for %s, and %s; a node opens one session per peer, so one of them would never be used",
				other.Name, sessionOf(peer), why))
		default:
			v.Warnings = append(v.Warnings, fmt.Sprintf("BGPPeer %q is also for %s, and %s; a node matching both opens only one of the two sessions",
				other.Name, sessionOf(peer), why))
		}
	}
	if ref := peer.PasswordSecret; ref != nil && !secretExists {
		v.Warnings = append(v.Warnings, fmt.Sprintf("passwordSecret %q does not exist in namespace %s; the session is not opened until it is created",
			ref.Name, ref.Namespace))
	}
	return v
}

// session is what a node can open only once: one BGP session per peer
// address (or interface, for unnumbered peers) and port.
type session struct {
	address netip.Addr
	iface   string
	port    uint16
}

func (s session) String() string {
	if s.iface != "" {
		return fmt.Sprintf("interface %s port %d", s.iface, s.port)
	}
	return fmt.Sprintf("%s port %d", s.address, s.port)
}

func sessionOf(p *config.BGPPeer) session {
	return session{address: p.Address, iface: p.Interface, port: p.Port}
}

// nodesInCommon tells whether two peers' node selections can share a
// node: why explains it (empty when they cannot), certain says whether
// every cluster has such a node as soon as either peer selects any.
func nodesInCommon(a, b *config.BGPPeer) (why string, certain bool) {
	switch {
	case len(a.NodeSelectors) == 0 && len(b.NodeSelectors) == 0:
		return "both select every node", true
	case len(a.NodeSelectors) == 0:
		return "this peer selects every node, including those the other selects", true
	case len(b.NodeSelectors) == 0:
		return "the other selects every node, including those this peer selects", true
	}
	for _, sa := range a.NodeSelectors {
		for _, sb := range b.NodeSelectors {
			if sa.String() == sb.String() {
				return fmt.Sprintf("both select nodes with %q", sa.String()), true
			}
		}
	}
	for _, sa := range a.NodeSelectors {
		for _, sb := range b.NodeSelectors {
			if canBothMatch(sa, sb) {
				return fmt.Sprintf("a node labelled to match both %q and %q would be selected by both", sa.String(), sb.String()), false
			}
		}
	}
	return "", false
}

func certainlyShared(a, b *config.BGPPeer) bool {
	_, certain := nodesInCommon(a, b)
	return certain
}

func intersect(a, b *netipx.IPSet) *netipx.IPSet {
	var bld netipx.IPSetBuilder
	bld.AddSet(a)
	bld.Intersect(b)
	s, _ := bld.IPSet() // only fails on invalid input, which parsed sets are not
	return s
}

// describeSet writes a set as its ranges, a few of them at most.
func describeSet(s *netipx.IPSet) string {
	var parts []string
	for _, r := range s.Ranges() {
		if r.From() == r.To() {
			parts = append(parts, r.From().String())
		} else if p, ok := r.Prefix(); ok {
			parts = append(parts, p.String())
		} else {
			parts = append(parts, r.String())
		}
	}
	return listSome(parts)
}

func missingNames(names []string, exists map[string]bool) []string {
	var out []string
	for _, n := range names {
		if !exists[n] && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// listSome joins up to MaxNamesShown items and says how many more there
// are.
func listSome(items []string) string {
	if len(items) <= MaxNamesShown {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:MaxNamesShown], ", "), len(items)-MaxNamesShown)
}

func listAll(kind string, names []string) string {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = fmt.Sprintf("%q", n)
	}
	if len(names) == 1 {
		return kind + " " + quoted[0]
	}
	return kind + "s " + strings.Join(quoted, ", ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func sortedPools(in []*config.Pool) []*config.Pool {
	out := slices.Clone(in)
	slices.SortFunc(out, func(a, b *config.Pool) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func sortedPeers(in []*config.BGPPeer) []*config.BGPPeer {
	out := slices.Clone(in)
	slices.SortFunc(out, func(a, b *config.BGPPeer) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func sortedAssignments(in []Assignment) []Assignment {
	out := slices.Clone(in)
	slices.SortFunc(out, func(a, b Assignment) int { return strings.Compare(a.Service, b.Service) })
	return out
}
