package bgpplan

import (
	"fmt"
	"net/netip"
	"sort"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/barelb/barelb/internal/config"
)

// ExcludeLabel keeps a node out of external load balancing when present,
// whatever its value.
const ExcludeLabel = "node.kubernetes.io/exclude-from-external-load-balancers"

// Service is a LoadBalancer Service with addresses, as BGP mode sees it.
type Service struct {
	Key       string // namespace/name
	Labels    labels.Set
	Pool      string
	Addresses []netip.Addr
	// LocalTraffic is externalTrafficPolicy Local: only nodes with a ready
	// endpoint advertise.
	LocalTraffic bool
	// EndpointNodes are the nodes holding a ready endpoint.
	EndpointNodes map[string]bool
}

// Node is the node the plan is made for.
type Node struct {
	Name   string
	Labels labels.Set
	// NetworkUnavailable is the node's NetworkUnavailable condition.
	NetworkUnavailable bool
}

// Input is everything the plan depends on.
type Input struct {
	Services       []Service
	Pools          map[string]*config.Pool
	Advertisements []*config.BGPAdvertisement
	Peers          []*config.BGPPeer
	Node           Node
}

// Plan is what the node opens and advertises.
type Plan struct {
	// Peers are the sessions the node opens (peers whose node selectors
	// pick it), sorted by name, each with its routes. A node that may not
	// advertise keeps its sessions, with no routes.
	Peers []PeerPlan
	// Problems are what the plan refused to guess, sorted.
	Problems []Problem
}

// PeerPlan is one session and the routes sent on it.
type PeerPlan struct {
	Peer   string
	Routes []Route // sorted by prefix
}

// Route is one prefix sent to one peer.
type Route struct {
	Prefix netip.Prefix
	// LocalPref is set for iBGP peers only; 0 means unset.
	LocalPref uint32
	// Communities is the union of the communities of every advertisement
	// producing the route, sorted by config.SortCommunities.
	Communities []config.Community
	// Services whose addresses the prefix carries, sorted.
	Services []string
	// Advertisements producing the route, sorted.
	Advertisements []string
}

// Problem is a part of the configuration the plan could not follow.
type Problem struct {
	// Object names the offending object ("BGPAdvertisement NAME"), Peer
	// and Prefix are set when the problem concerns one.
	Object  string
	Peer    string
	Prefix  netip.Prefix
	Message string
}

func (p Problem) String() string {
	s := p.Object
	if p.Peer != "" {
		s += " peer " + p.Peer
	}
	if p.Prefix.IsValid() {
		s += " prefix " + p.Prefix.String()
	}
	return s + ": " + p.Message
}

// Excluded tells whether the node may not advertise at all: it carries
// ExcludeLabel or its network is unavailable.
func (n Node) Excluded() bool {
	_, labelled := n.Labels[ExcludeLabel]
	return labelled || n.NetworkUnavailable
}

// PlanRoutes decides the plan, following MetalLB's rules:
//
//   - An advertisement applies to a Service when it covers the Service's
//     pool, selects the Service and this node; the node must not be
//     excluded, and for Local traffic it must hold a ready endpoint — of
//     every Service with Local traffic that uses the address.
//   - Each address is advertised with the advertisement's aggregation
//     length (the mask applied to the address: 198.51.100.7 at /24 is
//     198.51.100.0/24). An advertisement whose length is shorter than one
//     of the pool's CIDRs is refused for that pool (a Problem).
//   - It goes to the advertisement's peers (all when it names none) that
//     this node has a session with; IPv6 prefixes over an IPv4 session
//     and the reverse only when the peer allows multiprotocol.
//   - Several advertisements of one pool each produce their prefixes; when
//     they produce the same prefix for the same peer, communities are
//     joined, and local preferences must agree: for an iBGP peer, two
//     different non-zero values are a Problem and the prefix is not sent
//     to that peer rather than sent with a guess.
//
// The result does not depend on the order of the inputs.
func PlanRoutes(in Input) Plan {
	type key struct {
		peer   string
		prefix netip.Prefix
	}
	type acc struct {
		localPrefs  map[uint32][]string // value -> advertisements
		communities map[config.Community]bool
		services    map[string]bool
		advs        map[string]bool
	}

	var plan Plan
	sessions := map[string]*config.BGPPeer{}
	for _, p := range in.Peers {
		if p.SelectsNode(in.Node.Labels) {
			sessions[p.Name] = p
		}
	}
	routes := map[key]*acc{}
	badAggregation := map[[2]string]bool{} // advertisement, pool
	// An address shared by Services with Local traffic (their backends
	// may differ: the sharing key allows it) is advertised only from a
	// node holding a ready endpoint of every one of them: traffic for a
	// Service without one here would be dropped.
	var noEndpoint map[netip.Addr]bool
	for _, svc := range in.Services {
		if svc.LocalTraffic && !svc.EndpointNodes[in.Node.Name] {
			if noEndpoint == nil {
				noEndpoint = map[netip.Addr]bool{}
			}
			for _, ip := range svc.Addresses {
				noEndpoint[ip] = true
			}
		}
	}
	if !in.Node.Excluded() {
		for _, svc := range in.Services {
			pool := in.Pools[svc.Pool]
			if pool == nil {
				continue
			}
			if svc.LocalTraffic && !svc.EndpointNodes[in.Node.Name] {
				continue
			}
			for _, adv := range in.Advertisements {
				if !adv.CoversPool(pool) || !adv.SelectsService(svc.Labels) || !adv.SelectsNode(in.Node.Labels) {
					continue
				}
				if err := adv.CheckAggregation(pool); err != nil {
					k := [2]string{adv.Name, pool.Name}
					if !badAggregation[k] {
						badAggregation[k] = true
						plan.Problems = append(plan.Problems, Problem{Object: "BGPAdvertisement " + adv.Name, Message: err.Error()})
					}
					continue
				}
				for _, ip := range svc.Addresses {
					if noEndpoint[ip] {
						continue
					}
					prefix, err := ip.Prefix(adv.AggregationLengthFor(ip))
					if err != nil {
						continue // unreachable: lengths are validated
					}
					for name, peer := range sessions {
						if !adv.SelectsPeer(name) || !carries(peer, ip) {
							continue
						}
						k := key{name, prefix}
						a := routes[k]
						if a == nil {
							a = &acc{localPrefs: map[uint32][]string{}, communities: map[config.Community]bool{}, services: map[string]bool{}, advs: map[string]bool{}}
							routes[k] = a
						}
						if peer.IsInternal() && adv.LocalPref != 0 {
							a.localPrefs[adv.LocalPref] = appendOnce(a.localPrefs[adv.LocalPref], adv.Name)
						}
						for _, c := range adv.Communities {
							a.communities[c] = true
						}
						a.services[svc.Key] = true
						a.advs[adv.Name] = true
					}
				}
			}
		}
	}

	perPeer := map[string][]Route{}
	for k, a := range routes {
		r := Route{Prefix: k.prefix, Services: sortedKeys(a.services), Advertisements: sortedKeys(a.advs)}
		if len(a.localPrefs) > 1 {
			var desc []string
			for v, advs := range a.localPrefs {
				sort.Strings(advs)
				desc = append(desc, fmt.Sprintf("%d from %v", v, advs))
			}
			sort.Strings(desc)
			plan.Problems = append(plan.Problems, Problem{
				Object: "BGPAdvertisements " + fmt.Sprint(r.Advertisements), Peer: k.peer, Prefix: k.prefix,
				Message: fmt.Sprintf("conflicting localPref (%s); the prefix is not sent to this peer", joinSorted(desc)),
			})
			continue
		}
		for v := range a.localPrefs {
			r.LocalPref = v
		}
		for c := range a.communities {
			r.Communities = append(r.Communities, c)
		}
		config.SortCommunities(r.Communities)
		perPeer[k.peer] = append(perPeer[k.peer], r)
	}
	for name := range sessions {
		rs := perPeer[name]
		sort.Slice(rs, func(i, j int) bool { return prefixLess(rs[i].Prefix, rs[j].Prefix) })
		plan.Peers = append(plan.Peers, PeerPlan{Peer: name, Routes: rs})
	}
	sort.Slice(plan.Peers, func(i, j int) bool { return plan.Peers[i].Peer < plan.Peers[j].Peer })
	sort.Slice(plan.Problems, func(i, j int) bool { return plan.Problems[i].String() < plan.Problems[j].String() })
	return plan
}

// carries tells whether a session with peer may carry ip's family.
func carries(peer *config.BGPPeer, ip netip.Addr) bool {
	if !peer.DisableMP {
		return true
	}
	if !peer.Address.IsValid() {
		// Unnumbered sessions run over IPv6 link-local addresses.
		return ip.Is6()
	}
	return peer.Address.Is4() == ip.Is4()
}

func prefixLess(a, b netip.Prefix) bool {
	if a.Addr() != b.Addr() {
		return a.Addr().Less(b.Addr())
	}
	return a.Bits() < b.Bits()
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func appendOnce(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

func joinSorted(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += "; "
		}
		out += x
	}
	return out
}
