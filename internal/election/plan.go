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
// announces it. Services sharing an address are planned together: a node
// may announce the address when it may announce it for any of them, so
// that one node answers for all. Addresses no node may announce are
// absent from the plan. The result is sorted by address.
func PlanL2(services []L2Service, pools map[string]*config.Pool, advs []*config.L2Advertisement, nodes []L2Node) []L2Announcement {
	type group struct {
		services   []string
		candidates map[string]*candidate
	}
	groups := map[netip.Addr]*group{}
	for _, svc := range services {
		pool := pools[svc.Pool]
		if pool == nil {
			continue
		}
		for _, ip := range svc.Addresses {
			g := groups[ip]
			if g == nil {
				g = &group{candidates: map[string]*candidate{}}
				groups[ip] = g
			}
			g.services = append(g.services, svc.Key)
			for _, node := range nodes {
				addCandidate(g.candidates, node, svc, pool, advs)
			}
		}
	}

	out := make([]L2Announcement, 0, len(groups))
	for ip, g := range groups {
		election := make([]Node, 0, len(g.candidates))
		for _, c := range g.candidates {
			election = append(election, c.node)
		}
		winner, ok := Winner(ip.String(), election, false)
		if !ok {
			continue
		}
		sort.Strings(g.services)
		out = append(out, L2Announcement{Address: ip, Node: winner, Interfaces: g.candidates[winner].interfaces(), Services: g.services})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Address.Less(out[j].Address) })
	return out
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
