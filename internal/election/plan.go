package election

import (
	"net/netip"
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
}

// L2Announcement says which node answers for an address, and where.
type L2Announcement struct {
	Address netip.Addr
	Node    string
	// Interfaces named by the advertisements that put the node up; nil
	// means the default interface rule.
	Interfaces []string
	// Services using the address, sorted.
	Services []string
}

// PlanL2 decides, for every address of every Service, which node
// announces it. Addresses that belong together — the IPv4 and IPv6
// addresses of a dual-stack Service, and addresses shared by Services —
// form a group, elected once under the key of its lowest address, so that
// one node answers for all of them and a Service's status names one node.
// A node may announce an address when an advertisement lets it announce
// the address for any Service using it; an address whose group winner may
// not announce it is elected on its own. Addresses no node may announce
// are absent from the plan. The result is sorted by address.
func PlanL2(services []L2Service, pools map[string]*config.Pool, advs []*config.L2Advertisement, nodes []L2Node) []L2Announcement {
	type addressPlan struct {
		services   []string
		candidates map[string]*candidate
	}
	plans := map[netip.Addr]*addressPlan{}
	groups := newUnionFind()
	for _, svc := range services {
		pool := pools[svc.Pool]
		if pool == nil {
			continue
		}
		for i, ip := range svc.Addresses {
			p := plans[ip]
			if p == nil {
				p = &addressPlan{candidates: map[string]*candidate{}}
				plans[ip] = p
			}
			p.services = append(p.services, svc.Key)
			for _, node := range nodes {
				addCandidate(p.candidates, node, svc, pool, advs)
			}
			groups.union(svc.Addresses[0], svc.Addresses[i])
		}
	}

	// Each group's winner, among the nodes that may announce any of its
	// addresses.
	groupCandidates := map[netip.Addr]map[string]Node{}
	for ip, p := range plans {
		root := groups.find(ip)
		if groupCandidates[root] == nil {
			groupCandidates[root] = map[string]Node{}
		}
		for name, c := range p.candidates {
			if prev, ok := groupCandidates[root][name]; !ok || c.node.Preference > prev.Preference {
				groupCandidates[root][name] = c.node
			}
		}
	}
	groupWinner := map[netip.Addr]string{}
	for root, cands := range groupCandidates {
		list := make([]Node, 0, len(cands))
		for _, n := range cands {
			list = append(list, n)
		}
		if w, ok := Winner(root.String(), list, false); ok {
			groupWinner[root] = w
		}
	}

	out := make([]L2Announcement, 0, len(plans))
	for ip, p := range plans {
		winner, ok := groupWinner[groups.find(ip)]
		if c := p.candidates[winner]; !ok || c == nil || !c.node.Eligible(false) {
			list := make([]Node, 0, len(p.candidates))
			for _, c := range p.candidates {
				list = append(list, c.node)
			}
			if winner, ok = Winner(ip.String(), list, false); !ok {
				continue
			}
		}
		sort.Strings(p.services)
		out = append(out, L2Announcement{Address: ip, Node: winner, Interfaces: p.candidates[winner].interfaces(), Services: p.services})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Address.Less(out[j].Address) })
	return out
}

// unionFind groups addresses; each group's root is its lowest address, so
// that every speaker names the group alike.
type unionFind map[netip.Addr]netip.Addr

func newUnionFind() unionFind { return unionFind{} }

func (u unionFind) find(ip netip.Addr) netip.Addr {
	parent, ok := u[ip]
	if !ok {
		u[ip] = ip
		return ip
	}
	if parent == ip {
		return ip
	}
	root := u.find(parent)
	u[ip] = root
	return root
}

func (u unionFind) union(a, b netip.Addr) {
	ra, rb := u.find(a), u.find(b)
	switch {
	case ra == rb:
	case ra.Less(rb):
		u[rb] = ra
	default:
		u[ra] = rb
	}
}

// candidate is a node that may announce an address, with what the
// advertisements that allow it say.
type candidate struct {
	node          Node
	allInterfaces bool
	named         map[string]bool
}

func (c *candidate) interfaces() []string {
	if c.allInterfaces || len(c.named) == 0 {
		return nil
	}
	out := make([]string, 0, len(c.named))
	for name := range c.named {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// addCandidate records node as a candidate for the Service's address when
// an advertisement covering the Service's pool selects the Service and the
// node (and, for Local traffic, the node holds an endpoint).
func addCandidate(candidates map[string]*candidate, node L2Node, svc L2Service, pool *config.Pool, advs []*config.L2Advertisement) {
	if svc.LocalTraffic && !svc.EndpointNodes[node.Name] {
		return
	}
	for _, adv := range advs {
		if !adv.CoversPool(pool) || !adv.SelectsService(svc.Labels) || !adv.SelectsNode(node.Labels) {
			continue
		}
		c := candidates[node.Name]
		if c == nil {
			c = &candidate{
				node:  Node{Name: node.Name, Alive: node.Alive, Excluded: node.Excluded, Selected: true, HasEndpoint: true},
				named: map[string]bool{},
			}
			candidates[node.Name] = c
		}
		if pref := adv.Preference(node.Labels); pref > c.node.Preference {
			c.node.Preference = pref
		}
		if len(adv.Interfaces) == 0 {
			c.allInterfaces = true
		}
		for _, name := range adv.Interfaces {
			c.named[name] = true
		}
	}
}
