package bgpplan

import (
	"fmt"
	"math/rand"
	"net/netip"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/labels"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
)

// referencePlan is PlanRoutes as it was before it shared lists between
// routes: a set per route for every list, simple and slow. The plans
// must agree on every input.
func referencePlan(in Input) Plan {
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
	// An address shared by Local Services is advertised only from a node
	// with a ready endpoint of every one of them.
	noEndpoint := map[netip.Addr]bool{}
	for _, svc := range in.Services {
		if svc.LocalTraffic && !svc.EndpointNodes[in.Node.Name] {
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
		r := Route{Prefix: k.prefix, Services: refSortedKeys(a.services), Advertisements: refSortedKeys(a.advs)}
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

func refSortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestPlanRoutesMatchesReference checks PlanRoutes against referencePlan
// on random inputs made to collide: few prefixes (short aggregation
// lengths), Services listed twice, advertisements sharing communities,
// conflicting local preferences. It also checks that making a plan leaves
// the inputs' lists alone and that a second plan is unaffected by the
// first (its lists are its own).
func TestPlanRoutesMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	pools := map[string]*config.Pool{
		"a": pool(t, "a", map[string]string{"k": "a"}, "203.0.113.0/24", "2001:db8:5::/64"),
		"b": pool(t, "b", nil, "198.51.100.0/25"),
	}
	peers := []*config.BGPPeer{
		peer(t, "e", nil),
		peer(t, "i", func(s *barelbv1beta1.BGPPeerSpec) { s.PeerASN = 64500 }),
		peer(t, "i2", func(s *barelbv1beta1.BGPPeerSpec) { s.PeerASN = 64500; s.PeerAddress = "198.51.100.253" }),
		peer(t, "v6", func(s *barelbv1beta1.BGPPeerSpec) { s.PeerAddress = "2001:db8::fe"; s.DisableMP = true }),
		peer(t, "r", func(s *barelbv1beta1.BGPPeerSpec) { s.NodeSelectors = sel("rack", "a") }),
	}
	pick := func(options ...string) string { return options[rng.Intn(len(options))] }
	for iter := 0; iter < 2000; iter++ {
		var advs []*config.BGPAdvertisement
		for i := 0; i < 1+rng.Intn(4); i++ {
			spec := barelbv1beta1.BGPAdvertisementSpec{LocalPref: uint32(rng.Intn(3) * 100)}
			l4, l6 := int32(24+rng.Intn(3)*4), int32(64+rng.Intn(3)*32)
			spec.AggregationLength, spec.AggregationLengthV6 = &l4, &l6
			if rng.Intn(2) == 0 {
				spec.IPAddressPools = []string{pick("a", "b")}
			}
			if rng.Intn(3) == 0 {
				spec.Peers = []string{pick("e", "i", "i2", "v6", "r", "missing")}
			}
			if rng.Intn(3) == 0 {
				spec.ServiceSelectors = sel("app", pick("x", "y"))
			}
			if rng.Intn(4) == 0 {
				spec.NodeSelectors = sel("rack", pick("a", "b"))
			}
			for j := 0; j < rng.Intn(4); j++ {
				spec.Communities = append(spec.Communities, barelbv1beta1.CommunityRef(pick("64500:1", "64500:2", "large:1:2:3", "no-export")))
			}
			advs = append(advs, adv(t, fmt.Sprintf("adv%d", i), spec))
		}
		var svcs []Service
		for i := 0; i < rng.Intn(12); i++ {
			p := pick("a", "b", "gone")
			var addrs []netip.Addr
			if p == "b" {
				addrs = []netip.Addr{netip.AddrFrom4([4]byte{198, 51, 100, byte(rng.Intn(128))})}
			} else {
				addrs = []netip.Addr{netip.AddrFrom4([4]byte{203, 0, 113, byte(rng.Intn(256))})}
				if rng.Intn(2) == 0 {
					addrs = append(addrs, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 5, 14: byte(rng.Intn(4)), 15: byte(rng.Intn(256))}))
				}
			}
			key := fmt.Sprintf("ns/s%d", rng.Intn(8)) // some listed twice
			svcs = append(svcs, Service{Key: key, Pool: p, Addresses: addrs, Labels: labels.Set{"app": pick("x", "y")},
				LocalTraffic: rng.Intn(4) == 0, EndpointNodes: map[string]bool{pick("n1", "n2"): true}})
		}
		node := Node{Name: "n1", Labels: labels.Set{"rack": pick("a", "b")}}
		in := Input{Services: svcs, Pools: pools, Advertisements: advs, Peers: peers, Node: node}
		want := referencePlan(in)
		got := PlanRoutes(in)
		if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
			t.Fatalf("iteration %d: PlanRoutes differs from the reference (-want +got):\n%s", iter, diff)
		}
		// Mangle the first plan's lists: the second must not notice.
		for _, pp := range got.Peers {
			for _, r := range pp.Routes {
				for i := range r.Services {
					r.Services[i] = "mangled"
				}
			}
		}
		if diff := cmp.Diff(want, PlanRoutes(in), cmpOpts); diff != "" {
			t.Fatalf("iteration %d: a plan shares lists with the one before (-want +got):\n%s", iter, diff)
		}
	}
}

// BenchmarkPlanRoutes makes the plan of 10,000 Services (BARELB_SERVICES
// is not read: the size is fixed so that runs compare) from one pool and
// one advertisement to 4 peers, the shape of e2etest/bgp's
// BenchmarkBGPScale, and reports what one plan allocates (B/op): the
// speaker makes one on every change of any Service.
//
//	go test -run='^$' -bench=PlanRoutes -benchmem ./internal/bgpplan/
func BenchmarkPlanRoutes(b *testing.B) {
	pools := map[string]*config.Pool{"scale": pool(b, "scale", nil, "198.18.64.0/18")}
	advs := []*config.BGPAdvertisement{adv(b, "scale", barelbv1beta1.BGPAdvertisementSpec{IPAddressPools: []string{"scale"}})}
	var peers []*config.BGPPeer
	for i := range 4 {
		peers = append(peers, peer(b, fmt.Sprintf("router-%d", i), func(s *barelbv1beta1.BGPPeerSpec) {
			s.PeerAddress = fmt.Sprintf("203.0.113.%d", 1+i)
		}))
	}
	svcs := make([]Service, 10000)
	for i := range svcs {
		svcs[i] = Service{Key: fmt.Sprintf("scale/svc-%05d", i), Pool: "scale",
			Addresses: []netip.Addr{netip.AddrFrom4([4]byte{198, 18, byte(64 + i>>8), byte(i)})}}
	}
	in := Input{Services: svcs, Pools: pools, Advertisements: advs, Peers: peers, Node: Node{Name: "n1"}}
	b.ReportAllocs()
	for b.Loop() {
		p := PlanRoutes(in)
		if len(p.Peers) != 4 || len(p.Peers[0].Routes) != 10000 {
			b.Fatalf("plan of %d peers, %d routes to the first", len(p.Peers), len(p.Peers[0].Routes))
		}
	}
}
