package bgpplan

import (
	"fmt"
	"net/netip"
	"slices"
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
// The result does not depend on the order of the inputs. Its slices are
// shared between routes (a route's Services, Advertisements and
// Communities are often the same as another's): read them, never modify
// them.
//
// The plan is made on every change of any Service, for every Service and
// peer: at 10,000 Services and 4 peers it has 40,000 routes, so it
// allocates per route little more than the Route itself (6 MB at that
// size, against 54 MB with a set per list). A route
// made by one Service and one advertisement (the usual case) shares its
// lists with every other route of that Service or advertisement; a list is
// copied only when a second contributor extends it (the shared ones are
// full, cap == len, so append copies).
func PlanRoutes(in Input) Plan {
	var plan Plan
	sessions := map[string]*config.BGPPeer{}
	for _, p := range in.Peers {
		if p.SelectsNode(in.Node.Labels) {
			sessions[p.Name] = p
		}
	}
	names := make([]string, 0, len(sessions))
	for name := range sessions {
		names = append(names, name)
	}
	sort.Strings(names)
	peers := make([]*peerAcc, len(names))
	for i, name := range names {
		peers[i] = &peerAcc{peer: sessions[name]}
	}

	// What depends on the advertisement and pool only, once each.
	advs := make([]advInfo, len(in.Advertisements))
	for i, adv := range in.Advertisements {
		advs[i] = advInfo{adv: adv, names: []string{adv.Name}, selectsNode: adv.SelectsNode(in.Node.Labels)}
		if len(adv.Communities) > 0 {
			advs[i].communities = slices.Clip(adv.Communities)
		}
	}
	aggregation := map[[2]string]error{} // advertisement, pool
	checkAggregation := func(adv *config.BGPAdvertisement, pool *config.Pool) error {
		k := [2]string{adv.Name, pool.Name}
		err, ok := aggregation[k]
		if !ok {
			err = adv.CheckAggregation(pool)
			aggregation[k] = err
			if err != nil {
				plan.Problems = append(plan.Problems, Problem{Object: "BGPAdvertisement " + adv.Name, Message: err.Error()})
			}
		}
		return err
	}

	// First what every Service's addresses make, whichever the session:
	// (Service, advertisement, prefix) in the order of the Services.
	type contribution struct {
		svcKey []string // []string{svc.Key}, shared by its contributions
		adv    int32    // in advs
		prefix int32    // ID, in prefixes
	}
	contribs := make([]contribution, 0, len(in.Services))
	prefixes := make([]netip.Prefix, 0, len(in.Services))
	ids := make(map[netip.Prefix]int32, len(in.Services))
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
	if !in.Node.Excluded() && len(peers) > 0 {
		for _, svc := range in.Services {
			pool := in.Pools[svc.Pool]
			if pool == nil {
				continue
			}
			if svc.LocalTraffic && !svc.EndpointNodes[in.Node.Name] {
				continue
			}
			var svcKey []string
			for i := range advs {
				adv := advs[i].adv
				if !advs[i].selectsNode || !adv.CoversPool(pool) || !adv.SelectsService(svc.Labels) {
					continue
				}
				if checkAggregation(adv, pool) != nil {
					continue
				}
				if svcKey == nil {
					svcKey = []string{svc.Key}
				}
				for _, ip := range svc.Addresses {
					if noEndpoint[ip] {
						continue
					}
					prefix, err := ip.Prefix(adv.AggregationLengthFor(ip))
					if err != nil {
						continue // unreachable: lengths are validated
					}
					id, ok := ids[prefix]
					if !ok {
						id = int32(len(prefixes))
						ids[prefix] = id
						prefixes = append(prefixes, prefix)
					}
					contribs = append(contribs, contribution{svcKey: svcKey, adv: int32(i), prefix: id})
				}
			}
		}
	}

	// Then each session's share, its routes allocated once.
	for _, pa := range peers {
		goes := func(c contribution) bool {
			return advs[c.adv].adv.SelectsPeer(pa.peer.Name) && carries(pa.peer, prefixes[c.prefix].Addr())
		}
		n := 0
		for _, c := range contribs {
			if goes(c) {
				n++
			}
		}
		if n == 0 {
			continue
		}
		pa.routes = make([]Route, 0, min(n, len(prefixes)))
		pa.slot = make([]int32, len(prefixes))
		for _, c := range contribs {
			if goes(c) {
				ai := &advs[c.adv]
				pa.add(c.prefix, prefixes[c.prefix], c.svcKey, ai, pa.peer.IsInternal() && ai.adv.LocalPref != 0)
			}
		}
		pa.slot = nil
	}

	for _, pa := range peers {
		rs := pa.routes[:0] // filtered in place
		for i := range pa.routes {
			r := pa.routes[i]
			if len(r.Services) > 1 {
				// Owned (extended past the shared one-element list):
				// sort, and drop what a Service listed twice in the
				// input added twice.
				sort.Strings(r.Services)
				r.Services = slices.Compact(r.Services)
			}
			if len(r.Advertisements) > 1 {
				sort.Strings(r.Advertisements)
			}
			if pa.mixed[int32(i)] {
				config.SortCommunities(r.Communities)
			}
			if lps := pa.localPrefs[int32(i)]; len(lps) > 0 {
				if values := distinctValues(lps); len(values) > 1 {
					var desc []string
					for _, v := range values {
						var from []string
						for _, lp := range lps {
							if lp.value == v {
								from = appendOnce(from, lp.adv)
							}
						}
						sort.Strings(from)
						desc = append(desc, fmt.Sprintf("%d from %v", v, from))
					}
					sort.Strings(desc)
					plan.Problems = append(plan.Problems, Problem{
						Object: "BGPAdvertisements " + fmt.Sprint(r.Advertisements), Peer: pa.peer.Name, Prefix: r.Prefix,
						Message: fmt.Sprintf("conflicting localPref (%s); the prefix is not sent to this peer", joinSorted(desc)),
					})
					continue
				}
				r.LocalPref = lps[0].value
			}
			rs = append(rs, r)
		}
		if len(rs) == 0 {
			rs = nil
		}
		sort.Slice(rs, func(i, j int) bool { return prefixLess(rs[i].Prefix, rs[j].Prefix) })
		plan.Peers = append(plan.Peers, PeerPlan{Peer: pa.peer.Name, Routes: rs})
	}
	sort.Slice(plan.Problems, func(i, j int) bool { return plan.Problems[i].String() < plan.Problems[j].String() })
	return plan
}

// advInfo is what PlanRoutes reads of an advertisement, with the lists a
// route of it alone shares.
type advInfo struct {
	adv         *config.BGPAdvertisement
	names       []string           // []string{adv.Name}
	communities []config.Community // adv.Communities, full (cap == len)
	selectsNode bool
}

// peerAcc gathers the routes of one session.
type peerAcc struct {
	peer   *config.BGPPeer
	routes []Route
	// slot[id] is 1 + the index in routes of the prefix with that ID, 0
	// when the session has no route for it (yet); only while adding.
	slot []int32
	// localPrefs are the non-zero local preferences asked for a route
	// (iBGP only), by route; mixed marks the routes whose communities
	// come from more than one advertisement (owned, to sort). Both are
	// rare, hence maps rather than a field of every route.
	localPrefs map[int32][]localPref
	mixed      map[int32]bool
}

type localPref struct {
	value uint32
	adv   string
}

// add records that advertisement ai makes the Service (svcKey, a
// one-element list) send prefix (whose ID is id) on this session.
func (pa *peerAcc) add(id int32, prefix netip.Prefix, svcKey []string, ai *advInfo, withLocalPref bool) {
	i := pa.slot[id] - 1
	if i < 0 {
		i = int32(len(pa.routes))
		pa.slot[id] = i + 1
		pa.routes = append(pa.routes, Route{Prefix: prefix, Services: svcKey, Advertisements: ai.names, Communities: ai.communities})
	} else {
		r := &pa.routes[i]
		// The Services come one after the other: one already listed is
		// the last one.
		if r.Services[len(r.Services)-1] != svcKey[0] {
			r.Services = append(r.Services, svcKey[0])
		}
		if !slices.Contains(r.Advertisements, ai.adv.Name) {
			r.Advertisements = append(r.Advertisements, ai.adv.Name)
		}
		for _, c := range ai.communities {
			if !slices.Contains(r.Communities, c) {
				r.Communities = append(r.Communities, c)
				if pa.mixed == nil {
					pa.mixed = map[int32]bool{}
				}
				pa.mixed[i] = true
			}
		}
	}
	if withLocalPref {
		if pa.localPrefs == nil {
			pa.localPrefs = map[int32][]localPref{}
		}
		lp := localPref{value: ai.adv.LocalPref, adv: ai.adv.Name}
		if !slices.Contains(pa.localPrefs[i], lp) {
			pa.localPrefs[i] = append(pa.localPrefs[i], lp)
		}
	}
}

// distinctValues are the values of lps, sorted, once each.
func distinctValues(lps []localPref) []uint32 {
	var out []uint32
	for _, lp := range lps {
		if !slices.Contains(out, lp.value) {
			out = append(out, lp.value)
		}
	}
	slices.Sort(out)
	return out
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
