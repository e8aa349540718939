package election

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"sort"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/barelb/barelb/internal/config"
)

// L2Service is a LoadBalancer Service with addresses, as layer-2 mode
// sees it.
type L2Service struct {
	Key       string // namespace/name
	Labels    labels.Set
	Pool      string
	Addresses []netip.Addr
	// LocalTraffic is externalTrafficPolicy Local: only nodes with a ready
	// endpoint may announce.
	LocalTraffic bool
	// EndpointNodes are the nodes holding a ready endpoint.
	EndpointNodes map[string]bool
}

// L2Node is a node as layer-2 mode sees it.
type L2Node struct {
	Name   string
	Labels labels.Set
	// Alive: its speaker is a live member.
	Alive bool
	// Excluded: labelled node.kubernetes.io/exclude-from-external-load-balancers
	// or NetworkUnavailable.
	Excluded bool
	// Drained: under planned maintenance (see Node.Drained); announces
	// only what no other node may.
	Drained bool
	// Subnets are the subnets of the node's answerable interfaces, as its
	// speaker publishes them; nil when unknown (a speaker that does not
	// say), which makes the node a candidate for every address.
	Subnets []netip.Prefix
}

// L2Announcement says which node answers for an address, and where.
type L2Announcement struct {
	Address netip.Addr
	// Key is the address whose text the node was elected under: the
	// lowest address of its group, or Address itself (see PlanL2).
	Key  netip.Addr
	Node string
	// Owner is the node the address goes to while every candidate is
	// alive (Node, then, unless the owner is gone): it wins a contest
	// between two speakers that both answer (ArbitrateOwned). Empty for
	// an address elected apart from its group, which rendezvous settles.
	Owner string
	// Interfaces named by the advertisements that put the node up; nil
	// means the default interface rule.
	Interfaces []string
	// Services using the address, sorted.
	Services []string
	// OutsideSubnets: no node with known subnets has one holding the
	// address, so every candidate node was in the election (the
	// fallback rule; the node answers on the interfaces
	// layer2.SelectInterfaces picks for an address outside its subnets:
	// every answerable one).
	OutsideSubnets bool
	// NoCommonEndpoint: Services with externalTrafficPolicy Local share
	// the address, and no node that may announce it holds a ready
	// endpoint of every one of them. Node is empty then: nobody
	// announces it; Reporter names the node that tells the Services
	// (the same for every speaker).
	NoCommonEndpoint bool
	Reporter         string
}

// PlanL2 decides, for every address of every Service, which node
// announces it. Addresses that belong together — the IPv4 and IPv6
// addresses of a dual-stack Service, and addresses shared by Services —
// form a group, elected once under the key of its lowest address, so that
// one node answers for all of them and a Service's status names one node.
// A node may announce an address when an advertisement lets it announce
// the address for any Service using it; an address whose group winner may
// not announce it is elected on its own. Addresses no node may announce
// are absent from the plan, but for addresses shared by Services with
// Local traffic that no node holds an endpoint of all of
// (NoCommonEndpoint). The result is sorted by address.
func PlanL2(services []L2Service, pools map[string]*config.Pool, advs []*config.L2Advertisement, nodes []L2Node) []L2Announcement {
	if len(advs) == 0 {
		// No node may announce anything: the plan is empty. A cluster
		// in BGP mode only has no L2Advertisement, and plans on every
		// change of any Service; it need not build the plan of 10,000
		// addresses to learn that.
		return []L2Announcement{}
	}
	// The plan runs on every event for every address (10,000 in a large
	// cluster), so it makes little garbage: an address's candidates are a
	// slice of exactly their number, and only addresses that share a group
	// with others get group bookkeeping.
	type addressPlan struct {
		services []string
		// candidates and ifaces are parallel: the nodes that may announce
		// the address, and the interfaces the advertisements name.
		candidates []Node
		ifaces     []interfaceChoice
		// local are the endpoint nodes of each Service with Local
		// traffic using the address, when several Services do.
		local []map[string]bool
	}
	plans := make(map[netip.Addr]*addressPlan, len(services))
	groups := newUnionFind()
	// Services of one pool that the same advertisements select have the
	// same candidates, unless their traffic is Local: they share one
	// read-only list (an address used by several Services gets its own
	// copy to merge into). At 250 nodes and 10,000 Services, a list per
	// Service would be 100 MB per plan.
	type candidateList struct {
		nodes  []Node
		ifaces []interfaceChoice
	}
	shared := map[string]candidateList{}
	var memoKey []byte
	// Subnet-aware election: an address's candidates are the nodes with
	// an interface in a subnet holding it (see onSubnet).
	subnets := newSubnetIndex(nodes)
	outside := map[netip.Addr]bool{}
	var matches []int
	filteredShared := map[string]candidateList{}
	for _, svc := range services {
		pool := pools[svc.Pool]
		if pool == nil {
			continue
		}
		var list candidateList
		cached := false
		if !svc.LocalTraffic {
			memoKey = append(memoKey[:0], svc.Pool...)
			memoKey = append(memoKey, 0)
			for j, adv := range advs {
				if adv.CoversPool(pool) && adv.SelectsService(svc.Labels) {
					memoKey = binary.AppendUvarint(memoKey, uint64(j))
				}
			}
			list, cached = shared[string(memoKey)]
		}
		if !cached {
			for _, node := range nodes {
				if c, ok := candidateFor(node, svc, pool, advs); ok {
					list.nodes = append(list.nodes, c.node)
					list.ifaces = append(list.ifaces, c.interfaceChoice)
				}
			}
			if !svc.LocalTraffic {
				shared[string(memoKey)] = list
			}
		}
		for i, ip := range svc.Addresses {
			list := list
			if len(subnets.prefixes) > 0 {
				matches = subnets.match(ip, matches[:0])
				if len(matches) == 0 {
					outside[ip] = true // the fallback: every candidate
				} else {
					var key string
					if cached {
						key = string(binary.AppendUvarint(slices.Clip(memoKey), uint64(len(matches))))
						for _, m := range matches {
							key = string(binary.AppendUvarint([]byte(key), uint64(m)))
						}
					}
					filtered, ok := filteredShared[key]
					if !ok || !cached {
						filtered = candidateList{}
						for j, n := range list.nodes {
							if subnets.onSubnet(n.Name, matches) || !list.ifaces[j].all {
								filtered.nodes = append(filtered.nodes, n)
								filtered.ifaces = append(filtered.ifaces, list.ifaces[j])
							}
						}
						if cached {
							filteredShared[key] = filtered
						}
					}
					list = filtered
				}
			}
			p := plans[ip]
			if p == nil {
				p = &addressPlan{services: []string{svc.Key}, candidates: list.nodes, ifaces: list.ifaces}
				if svc.LocalTraffic {
					p.local = []map[string]bool{svc.EndpointNodes}
				}
				plans[ip] = p
				groups.union(svc.Addresses[0], svc.Addresses[i])
				continue
			}
			if svc.LocalTraffic {
				p.local = append(p.local, svc.EndpointNodes)
			}
			if len(p.services) == 1 {
				// Its list may be shared: merge into a copy.
				p.candidates, p.ifaces = slices.Clone(p.candidates), slices.Clone(p.ifaces)
			}
			p.services = append(p.services, svc.Key)
			for j, n := range list.nodes {
				k := slices.IndexFunc(p.candidates, func(c Node) bool { return c.Name == n.Name })
				if k < 0 {
					p.candidates = append(p.candidates, n)
					p.ifaces = append(p.ifaces, list.ifaces[j])
					continue
				}
				p.candidates[k].Preference = max(p.candidates[k].Preference, n.Preference)
				p.ifaces[k].merge(list.ifaces[j])
			}
			groups.union(svc.Addresses[0], svc.Addresses[i])
		}
	}

	// An address shared by Services with Local traffic is announced only
	// from a node holding a ready endpoint of every one of them (their
	// backends may differ: the sharing key allows it); a node without
	// one would drop that Service's traffic. No such node: the address
	// is not announced, and the plan says so (NoCommonEndpoint).
	var noCommon []L2Announcement
	for ip, p := range plans {
		if len(p.services) < 2 || len(p.local) == 0 {
			continue // a lone Service's candidates hold its endpoints already
		}
		var nodes []Node
		var ifaces []interfaceChoice
		for j, c := range p.candidates {
			if !slices.ContainsFunc(p.local, func(eps map[string]bool) bool { return !eps[c.Name] }) {
				nodes, ifaces = append(nodes, c), append(ifaces, p.ifaces[j])
			}
		}
		if !slices.ContainsFunc(nodes, func(n Node) bool { return n.Eligible(false) || n.Alive && n.Drained }) {
			// The report goes to one node, the same for every speaker.
			if reporter, ok := Winner(ip.String(), p.candidates, false); ok {
				sort.Strings(p.services)
				noCommon = append(noCommon, L2Announcement{Address: ip, Key: ip, Services: slices.Clone(p.services),
					NoCommonEndpoint: true, Reporter: reporter})
			}
		}
		p.candidates, p.ifaces = nodes, ifaces
	}

	// Each group's winner, among the nodes that may announce any of its
	// addresses, with the best preference any of them gives a node.
	groupCandidates := map[netip.Addr][]Node{}
	for ip, p := range plans {
		root, grouped := groups.root(ip)
		if !grouped {
			continue
		}
		cands := groupCandidates[root]
		for _, c := range p.candidates {
			k := slices.IndexFunc(cands, func(n Node) bool { return n.Name == c.Name })
			switch {
			case k < 0:
				cands = append(cands, c)
			case c.Preference > cands[k].Preference:
				cands[k] = c
			}
		}
		groupCandidates[root] = cands
	}
	// Every group, and every address alone in its group, is one ballot;
	// balance elects them all at once, so that no node takes more than
	// its share of the ballots with the same candidates.
	ballots := make([]ballot, 0, len(plans))
	ballotOf := make(map[netip.Addr]int, len(plans))
	for root, cands := range groupCandidates {
		ballotOf[root] = len(ballots)
		ballots = append(ballots, ballot{key: root.String(), cands: cands})
	}
	for ip, p := range plans {
		if _, grouped := groups.root(ip); !grouped {
			ballotOf[ip] = len(ballots)
			ballots = append(ballots, ballot{key: ip.String(), cands: p.candidates})
		}
	}
	outcomes := balance(ballots)

	out := make([]L2Announcement, 0, len(plans))
	for ip, p := range plans {
		root, _ := groups.root(ip)
		o := outcomes[ballotOf[root]]
		winner, owner, key := o.winner, o.owner, root
		k := slices.IndexFunc(p.candidates, func(n Node) bool { return n.Name == winner })
		if winner == "" || k < 0 || !p.candidates[k].Eligible(false) {
			// The group's winner may not announce this address (the
			// advertisements differ within the group): it is elected on
			// its own, by rendezvous alone, and a contest over it too.
			var ok bool
			if winner, ok = Winner(ip.String(), p.candidates, false); !ok {
				if winner, ok = lastResort(ip.String(), p.candidates); !ok {
					continue
				}
			}
			k, key, owner = slices.IndexFunc(p.candidates, func(n Node) bool { return n.Name == winner }), ip, ""
		}
		sort.Strings(p.services)
		out = append(out, L2Announcement{Address: ip, Key: key, Node: winner, Owner: owner, Interfaces: p.ifaces[k].interfaces(),
			Services: p.services, OutsideSubnets: outside[ip]})
	}
	out = append(out, noCommon...)
	sort.Slice(out, func(i, j int) bool { return out[i].Address.Less(out[j].Address) })
	return out
}

// lastResort elects, among drained candidates, the announcer of an
// address no other node may announce: draining is planned maintenance,
// and the drained node still works; leaving the address dark would turn
// a drain into an outage. ok is false when no drained candidate is
// eligible either.
func lastResort(key string, cands []Node) (string, bool) {
	var drained []Node
	for _, c := range cands {
		if c.Drained {
			c.Drained = false
			drained = append(drained, c)
		}
	}
	return Winner(key, drained, false)
}

// unionFind groups addresses; each group's root is its lowest address, so
// that every speaker names the group alike. An address never united with
// another is in no entry: it is a group of its own.
type unionFind map[netip.Addr]netip.Addr

func newUnionFind() unionFind { return unionFind{} }

func (u unionFind) find(ip netip.Addr) netip.Addr {
	parent, ok := u[ip]
	if !ok || parent == ip {
		return ip
	}
	root := u.find(parent)
	u[ip] = root
	return root
}

// root is the root of ip's group, and whether the group has other
// addresses.
func (u unionFind) root(ip netip.Addr) (netip.Addr, bool) {
	_, grouped := u[ip]
	return u.find(ip), grouped
}

func (u unionFind) union(a, b netip.Addr) {
	ra, rb := u.find(a), u.find(b)
	switch {
	case ra == rb:
		return
	case ra.Less(rb):
		u[rb] = ra
	default:
		u[ra] = rb
	}
	// Both roots are in the map from now on, so that every member of a
	// group has an entry.
	for _, r := range []netip.Addr{ra, rb} {
		if _, ok := u[r]; !ok {
			u[r] = r
		}
	}
}

// candidate is a node that may announce an address, with what the
// advertisements that allow it say.
type candidate struct {
	node Node
	interfaceChoice
}

// interfaceChoice is where the advertisements allowing a node let it
// answer: all (the default rule), or the interfaces named.
type interfaceChoice struct {
	all   bool
	named []string // without repeats
}

func (c *interfaceChoice) interfaces() []string {
	if c.all || len(c.named) == 0 {
		return nil
	}
	out := slices.Clone(c.named)
	sort.Strings(out)
	return out
}

// merge adds the interfaces o allows to c. c.named may share its array
// with an advertisement's interfaces: it is never written to, only
// replaced (slices.Clip makes append copy).
func (c *interfaceChoice) merge(o interfaceChoice) {
	c.all = c.all || o.all
	for _, name := range o.named {
		if !slices.Contains(c.named, name) {
			c.named = append(slices.Clip(c.named), name)
		}
	}
}

// candidateFor tells whether node is a candidate for the Service's
// address: an advertisement covering the Service's pool selects the
// Service and the node (and, for Local traffic, the node holds an
// endpoint); c says what the advertisements that do allow.
func candidateFor(node L2Node, svc L2Service, pool *config.Pool, advs []*config.L2Advertisement) (c candidate, ok bool) {
	if svc.LocalTraffic && !svc.EndpointNodes[node.Name] {
		return c, false
	}
	for _, adv := range advs {
		if !adv.CoversPool(pool) || !adv.SelectsService(svc.Labels) || !adv.SelectsNode(node.Labels) {
			continue
		}
		if !ok {
			c.node, ok = Node{Name: node.Name, Alive: node.Alive, Excluded: node.Excluded, Drained: node.Drained, Selected: true, HasEndpoint: true}, true
			c.node.Preference = max(0, adv.Preference(node.Labels))
			c.interfaceChoice = interfaceChoice{all: len(adv.Interfaces) == 0, named: adv.Interfaces}
			continue
		}
		c.node.Preference = max(c.node.Preference, adv.Preference(node.Labels))
		c.merge(interfaceChoice{all: len(adv.Interfaces) == 0, named: adv.Interfaces})
	}
	return c, ok
}

// subnetIndex tells which nodes have an interface in a subnet holding an
// address.
//
// Subnet-aware election: a node is a candidate for an address only if one
// of its subnets holds it, or the advertisement that allows it names its
// interfaces (the operator's choice: those may reach the clients through
// a route, not a subnet), or its subnets are unknown. Clusters whose
// nodes sit on several VLANs then get each address announced from its
// own segment, and failover stays there. An address that no known subnet
// holds is elected among every candidate, as before, and the plan says so
// (L2Announcement.OutsideSubnets).
type subnetIndex struct {
	prefixes []netip.Prefix // distinct, masked
	byNode   map[string][]int
}

func newSubnetIndex(nodes []L2Node) *subnetIndex {
	x := &subnetIndex{byNode: map[string][]int{}}
	seen := map[netip.Prefix]int{}
	for _, n := range nodes {
		if n.Subnets == nil {
			continue
		}
		ids := make([]int, 0, len(n.Subnets))
		for _, p := range n.Subnets {
			p = p.Masked()
			id, ok := seen[p]
			if !ok {
				id = len(x.prefixes)
				seen[p] = id
				x.prefixes = append(x.prefixes, p)
			}
			ids = append(ids, id)
		}
		x.byNode[n.Name] = ids
	}
	return x
}

// match appends the subnets holding ip to buf, in index order.
func (x *subnetIndex) match(ip netip.Addr, buf []int) []int {
	for id, p := range x.prefixes {
		if p.Contains(ip) {
			buf = append(buf, id)
		}
	}
	return buf
}

// onSubnet tells whether node has one of the subnets matched, or has
// unknown subnets.
func (x *subnetIndex) onSubnet(node string, matched []int) bool {
	ids, known := x.byNode[node]
	if !known {
		return true
	}
	for _, id := range ids {
		if slices.Contains(matched, id) {
			return true
		}
	}
	return false
}
