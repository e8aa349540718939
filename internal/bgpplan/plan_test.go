package bgpplan

import (
	"github.com/google/go-cmp/cmp"
	"math/rand"
	"net/netip"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
)

func pool(t testing.TB, name string, lbls map[string]string, addresses ...string) *config.Pool {
	t.Helper()
	p := &barelbv1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls}}
	for _, a := range addresses {
		p.Spec.Addresses = append(p.Spec.Addresses, barelbv1beta1.AddressRange(a))
	}
	out, err := config.PoolFromAPI(p)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func adv(t testing.TB, name string, spec barelbv1beta1.BGPAdvertisementSpec) *config.BGPAdvertisement {
	t.Helper()
	a, err := config.BGPAdvertisementFromAPI(&barelbv1beta1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec},
		map[string]config.Community{"no-export": config.StandardCommunity(65535, 65281)})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func peer(t testing.TB, name string, mutate func(*barelbv1beta1.BGPPeerSpec)) *config.BGPPeer {
	t.Helper()
	p := &barelbv1beta1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: barelbv1beta1.BGPPeerSpec{MyASN: 64500, PeerASN: 64501, PeerAddress: "198.51.100.254"}}
	if mutate != nil {
		mutate(&p.Spec)
	}
	out, err := config.BGPPeerFromAPI(p, config.BGPPeerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sel(k, v string) []barelbv1beta1.Selector {
	return []barelbv1beta1.Selector{{MatchLabels: map[string]barelbv1beta1.LabelValue{k: barelbv1beta1.LabelValue(v)}}}
}

var (
	vip4  = netip.MustParseAddr("203.0.113.7")
	vip4b = netip.MustParseAddr("203.0.113.9")
	vip6  = netip.MustParseAddr("2001:db8:5::7")
	pfx   = netip.MustParsePrefix
	c1    = config.StandardCommunity(64500, 1)
	c2    = config.StandardCommunity(64500, 2)
	noExp = config.StandardCommunity(65535, 65281)
	big   = config.LargeCommunity(64500, 7, 7)
)

func TestPlanRoutes(t *testing.T) {
	pools := map[string]*config.Pool{
		"public":  pool(t, "public", map[string]string{"tier": "public"}, "203.0.113.0/24", "2001:db8:5::/64"),
		"ranged":  pool(t, "ranged", nil, "198.51.100.10-198.51.100.11"),
		"private": pool(t, "private", nil, "192.0.2.0/24"),
	}
	node := Node{Name: "n1", Labels: labels.Set{"rack": "a"}}
	ebgp := peer(t, "ebgp", nil)
	ibgp := peer(t, "ibgp", func(s *barelbv1beta1.BGPPeerSpec) { s.PeerASN = 64500; s.PeerAddress = "198.51.100.253" })
	v6only := peer(t, "v6", func(s *barelbv1beta1.BGPPeerSpec) { s.PeerAddress = "2001:db8::fe"; s.DisableMP = true })
	rackB := peer(t, "rack-b", func(s *barelbv1beta1.BGPPeerSpec) { s.NodeSelectors = sel("rack", "b") })
	web := Service{Key: "shop/web", Pool: "public", Addresses: []netip.Addr{vip4, vip6}, Labels: labels.Set{"app": "web"}}
	api := Service{Key: "shop/api", Pool: "public", Addresses: []netip.Addr{vip4b}}
	plain := adv(t, "plain", barelbv1beta1.BGPAdvertisementSpec{})
	r := func(prefix string, svcs []string, advs []string, lp uint32, cs ...config.Community) Route {
		return Route{Prefix: pfx(prefix), LocalPref: lp, Communities: cs, Services: svcs, Advertisements: advs}
	}
	i32 := func(v int32) *int32 { return &v }

	tests := []struct {
		name         string
		in           Input
		want         []PeerPlan
		wantProblems []string
	}{
		{name: "one /32 and one /128 to an eBGP peer",
			in: Input{Services: []Service{web}, Advertisements: []*config.BGPAdvertisement{plain}, Peers: []*config.BGPPeer{ebgp}},
			want: []PeerPlan{{Peer: "ebgp", Routes: []Route{
				r("203.0.113.7/32", []string{"shop/web"}, []string{"plain"}, 0),
				r("2001:db8:5::7/128", []string{"shop/web"}, []string{"plain"}, 0)}}}},
		{name: "no advertisement: sessions, no routes",
			in:   Input{Services: []Service{web}, Peers: []*config.BGPPeer{ebgp, rackB}},
			want: []PeerPlan{{Peer: "ebgp"}}},
		{name: "localPref only for iBGP, communities to both",
			in: Input{Services: []Service{api}, Peers: []*config.BGPPeer{ebgp, ibgp}, Advertisements: []*config.BGPAdvertisement{
				adv(t, "pref", barelbv1beta1.BGPAdvertisementSpec{LocalPref: 200, Communities: []barelbv1beta1.CommunityRef{"no-export", "large:64500:7:7"}})}},
			want: []PeerPlan{
				{Peer: "ebgp", Routes: []Route{r("203.0.113.9/32", []string{"shop/api"}, []string{"pref"}, 0, noExp, big)}},
				{Peer: "ibgp", Routes: []Route{r("203.0.113.9/32", []string{"shop/api"}, []string{"pref"}, 200, noExp, big)}}}},
		{name: "aggregation masks the VIP and merges services",
			in: Input{Services: []Service{web, api}, Peers: []*config.BGPPeer{ebgp}, Advertisements: []*config.BGPAdvertisement{
				adv(t, "agg", barelbv1beta1.BGPAdvertisementSpec{AggregationLength: i32(24), AggregationLengthV6: i32(64)})}},
			want: []PeerPlan{{Peer: "ebgp", Routes: []Route{
				r("203.0.113.0/24", []string{"shop/api", "shop/web"}, []string{"agg"}, 0),
				r("2001:db8:5::/64", []string{"shop/web"}, []string{"agg"}, 0)}}}},
		{name: "two advertisements of one pool: both prefixes (MetalLB's example)",
			in: Input{Services: []Service{api}, Peers: []*config.BGPPeer{ibgp}, Advertisements: []*config.BGPAdvertisement{
				adv(t, "local", barelbv1beta1.BGPAdvertisementSpec{LocalPref: 100, Communities: []barelbv1beta1.CommunityRef{"no-export"}}),
				adv(t, "aggregate", barelbv1beta1.BGPAdvertisementSpec{AggregationLength: i32(24)})}},
			want: []PeerPlan{{Peer: "ibgp", Routes: []Route{
				r("203.0.113.0/24", []string{"shop/api"}, []string{"aggregate"}, 0),
				r("203.0.113.9/32", []string{"shop/api"}, []string{"local"}, 100, noExp)}}}},
		{name: "same prefix from two advertisements: communities joined, one localPref",
			in: Input{Services: []Service{api}, Peers: []*config.BGPPeer{ibgp}, Advertisements: []*config.BGPAdvertisement{
				adv(t, "a", barelbv1beta1.BGPAdvertisementSpec{LocalPref: 150, Communities: []barelbv1beta1.CommunityRef{"64500:2"}}),
				adv(t, "b", barelbv1beta1.BGPAdvertisementSpec{Communities: []barelbv1beta1.CommunityRef{"64500:1", "64500:2"}})}},
			want: []PeerPlan{{Peer: "ibgp", Routes: []Route{r("203.0.113.9/32", []string{"shop/api"}, []string{"a", "b"}, 150, c1, c2)}}}},
		{name: "conflicting localPref for iBGP: a problem, not a guess; eBGP unaffected",
			in: Input{Services: []Service{api}, Peers: []*config.BGPPeer{ebgp, ibgp}, Advertisements: []*config.BGPAdvertisement{
				adv(t, "a", barelbv1beta1.BGPAdvertisementSpec{LocalPref: 150}),
				adv(t, "b", barelbv1beta1.BGPAdvertisementSpec{LocalPref: 200})}},
			want:         []PeerPlan{{Peer: "ebgp", Routes: []Route{r("203.0.113.9/32", []string{"shop/api"}, []string{"a", "b"}, 0)}}, {Peer: "ibgp"}},
			wantProblems: []string{"BGPAdvertisements [a b] peer ibgp prefix 203.0.113.9/32: conflicting localPref (150 from [a]; 200 from [b]); the prefix is not sent to this peer"}},
		{name: "aggregation shorter than the pool's CIDR: refused for that pool",
			in: Input{Services: []Service{api, {Key: "shop/r", Pool: "ranged", Addresses: []netip.Addr{netip.MustParseAddr("198.51.100.10")}}},
				Peers: []*config.BGPPeer{ebgp}, Advertisements: []*config.BGPAdvertisement{adv(t, "agg", barelbv1beta1.BGPAdvertisementSpec{AggregationLength: i32(24)})}},
			want:         []PeerPlan{{Peer: "ebgp", Routes: []Route{r("203.0.113.0/24", []string{"shop/api"}, []string{"agg"}, 0)}}},
			wantProblems: []string{"BGPAdvertisement agg: BGPAdvertisement agg: aggregationLength 24 is shorter than 198.51.100.10/31 of pool ranged: the aggregate would cover addresses outside the pool"}},
		{name: "advertisement limited to a peer, a pool, a service",
			in: Input{Services: []Service{web, api, {Key: "x/p", Pool: "private", Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}}, Peers: []*config.BGPPeer{ebgp, ibgp},
				Advertisements: []*config.BGPAdvertisement{adv(t, "narrow", barelbv1beta1.BGPAdvertisementSpec{
					Peers: []string{"ibgp"}, IPAddressPoolSelectors: sel("tier", "public"), ServiceSelectors: sel("app", "web")})}},
			want: []PeerPlan{{Peer: "ebgp"}, {Peer: "ibgp", Routes: []Route{
				r("203.0.113.7/32", []string{"shop/web"}, []string{"narrow"}, 0),
				r("2001:db8:5::7/128", []string{"shop/web"}, []string{"narrow"}, 0)}}}},
		{name: "advertisement for other nodes",
			in: Input{Services: []Service{api}, Peers: []*config.BGPPeer{ebgp},
				Advertisements: []*config.BGPAdvertisement{adv(t, "b", barelbv1beta1.BGPAdvertisementSpec{NodeSelectors: sel("rack", "b")})}},
			want: []PeerPlan{{Peer: "ebgp"}}},
		{name: "disableMP: IPv6 prefix only to the IPv6 peer",
			in:   Input{Services: []Service{web}, Peers: []*config.BGPPeer{v6only}, Advertisements: []*config.BGPAdvertisement{plain}},
			want: []PeerPlan{{Peer: "v6", Routes: []Route{r("2001:db8:5::7/128", []string{"shop/web"}, []string{"plain"}, 0)}}}},
		{name: "Local without an endpoint here",
			in: Input{Services: []Service{{Key: "shop/l", Pool: "public", Addresses: []netip.Addr{vip4}, LocalTraffic: true, EndpointNodes: map[string]bool{"n2": true}}},
				Peers: []*config.BGPPeer{ebgp}, Advertisements: []*config.BGPAdvertisement{plain}},
			want: []PeerPlan{{Peer: "ebgp"}}},
		{name: "Local with an endpoint here",
			in: Input{Services: []Service{{Key: "shop/l", Pool: "public", Addresses: []netip.Addr{vip4}, LocalTraffic: true, EndpointNodes: map[string]bool{"n1": true}}},
				Peers: []*config.BGPPeer{ebgp}, Advertisements: []*config.BGPAdvertisement{plain}},
			want: []PeerPlan{{Peer: "ebgp", Routes: []Route{r("203.0.113.7/32", []string{"shop/l"}, []string{"plain"}, 0)}}}},
		{name: "address shared by Local Services: advertised only with endpoints of all",
			in: Input{Services: []Service{
				{Key: "shop/a", Pool: "public", Addresses: []netip.Addr{vip4}, LocalTraffic: true, EndpointNodes: map[string]bool{"n1": true}},
				{Key: "shop/b", Pool: "public", Addresses: []netip.Addr{vip4}, LocalTraffic: true, EndpointNodes: map[string]bool{"n2": true}},
			}, Peers: []*config.BGPPeer{ebgp}, Advertisements: []*config.BGPAdvertisement{plain}},
			want: []PeerPlan{{Peer: "ebgp"}}},
		{name: "address shared by Local Services with endpoints of both here",
			in: Input{Services: []Service{
				{Key: "shop/a", Pool: "public", Addresses: []netip.Addr{vip4}, LocalTraffic: true, EndpointNodes: map[string]bool{"n1": true}},
				{Key: "shop/b", Pool: "public", Addresses: []netip.Addr{vip4}, LocalTraffic: true, EndpointNodes: map[string]bool{"n1": true, "n2": true}},
			}, Peers: []*config.BGPPeer{ebgp}, Advertisements: []*config.BGPAdvertisement{plain}},
			want: []PeerPlan{{Peer: "ebgp", Routes: []Route{r("203.0.113.7/32", []string{"shop/a", "shop/b"}, []string{"plain"}, 0)}}}},
		{name: "address shared by a Cluster and a Local Service without endpoint here",
			in: Input{Services: []Service{
				{Key: "shop/a", Pool: "public", Addresses: []netip.Addr{vip4}},
				{Key: "shop/b", Pool: "public", Addresses: []netip.Addr{vip4}, LocalTraffic: true, EndpointNodes: map[string]bool{"n2": true}},
			}, Peers: []*config.BGPPeer{ebgp}, Advertisements: []*config.BGPAdvertisement{plain}},
			want: []PeerPlan{{Peer: "ebgp"}}},
		{name: "excluded node keeps sessions, no routes",
			in:   Input{Node: Node{Name: "n1", Labels: labels.Set{ExcludeLabel: ""}}, Services: []Service{api}, Peers: []*config.BGPPeer{ebgp}, Advertisements: []*config.BGPAdvertisement{plain}},
			want: []PeerPlan{{Peer: "ebgp"}}},
		{name: "network unavailable",
			in:   Input{Node: Node{Name: "n1", NetworkUnavailable: true}, Services: []Service{api}, Peers: []*config.BGPPeer{ebgp}, Advertisements: []*config.BGPAdvertisement{plain}},
			want: []PeerPlan{{Peer: "ebgp"}}},
		{name: "unknown pool",
			in:   Input{Services: []Service{{Key: "a/b", Pool: "gone", Addresses: []netip.Addr{vip4}}}, Peers: []*config.BGPPeer{ebgp}, Advertisements: []*config.BGPAdvertisement{plain}},
			want: []PeerPlan{{Peer: "ebgp"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.in.Node.Name == "" {
				tc.in.Node = node
			}
			tc.in.Pools = pools
			got := PlanRoutes(tc.in)
			if diff := cmp.Diff(tc.want, got.Peers, cmpOpts); diff != "" {
				t.Errorf("peers (-want +got):\n%s", diff)
			}
			var problems []string
			for _, p := range got.Problems {
				problems = append(problems, p.String())
			}
			if diff := cmp.Diff(tc.wantProblems, problems); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

// TestMakeProperties checks, over random inputs, what must hold whatever
// the configuration: the plan ignores input order; every route carries an
// address of a Service it names, masked to an advertisement's length;
// every route goes to a peer selecting this node and allowed by one of its
// advertisements; Local Services without an endpoint here and excluded
// nodes advertise nothing; eBGP routes never carry a localPref.
func TestMakeProperties(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	pools := map[string]*config.Pool{
		"a": pool(t, "a", map[string]string{"k": "a"}, "203.0.113.0/24", "2001:db8:5::/64"),
		"b": pool(t, "b", nil, "198.51.100.0/25"),
	}
	peers := []*config.BGPPeer{
		peer(t, "e", nil),
		peer(t, "i", func(s *barelbv1beta1.BGPPeerSpec) { s.PeerASN = 64500 }),
		peer(t, "v6", func(s *barelbv1beta1.BGPPeerSpec) { s.PeerAddress = "2001:db8::fe"; s.DisableMP = true }),
		peer(t, "r", func(s *barelbv1beta1.BGPPeerSpec) { s.NodeSelectors = sel("rack", "a") }),
	}
	byName := map[string]*config.BGPPeer{}
	for _, p := range peers {
		byName[p.Name] = p
	}
	pick := func(options ...string) string { return options[rng.Intn(len(options))] }
	for iter := 0; iter < 300; iter++ {
		var advs []*config.BGPAdvertisement
		for i := 0; i < 1+rng.Intn(3); i++ {
			spec := barelbv1beta1.BGPAdvertisementSpec{LocalPref: uint32(rng.Intn(3) * 100)}
			l4, l6 := int32(24+rng.Intn(9)), int32(64+rng.Intn(65))
			spec.AggregationLength, spec.AggregationLengthV6 = &l4, &l6
			if rng.Intn(2) == 0 {
				spec.IPAddressPools = []string{pick("a", "b")}
			}
			if rng.Intn(3) == 0 {
				spec.Peers = []string{pick("e", "i", "v6", "r", "missing")}
			}
			if rng.Intn(3) == 0 {
				spec.ServiceSelectors = sel("app", pick("x", "y"))
			}
			if rng.Intn(4) == 0 {
				spec.NodeSelectors = sel("rack", pick("a", "b"))
			}
			for j := 0; j < rng.Intn(3); j++ {
				spec.Communities = append(spec.Communities, barelbv1beta1.CommunityRef(pick("64500:1", "64500:2", "large:1:2:3", "no-export")))
			}
			advs = append(advs, adv(t, string(rune('p'+i)), spec))
		}
		var svcs []Service
		for i := 0; i < rng.Intn(6); i++ {
			p := pick("a", "b", "gone")
			var addrs []netip.Addr
			if p == "b" {
				addrs = []netip.Addr{netip.AddrFrom4([4]byte{198, 51, 100, byte(rng.Intn(128))})}
			} else {
				addrs = []netip.Addr{netip.AddrFrom4([4]byte{203, 0, 113, byte(rng.Intn(256))})}
				if rng.Intn(2) == 0 {
					addrs = append(addrs, netip.MustParseAddr("2001:db8:5::").Next().Next())
				}
			}
			svcs = append(svcs, Service{Key: string(rune('a' + i)), Pool: p, Addresses: addrs, Labels: labels.Set{"app": pick("x", "y")},
				LocalTraffic: rng.Intn(2) == 0, EndpointNodes: map[string]bool{pick("n1", "n2"): true}})
		}
		node := Node{Name: "n1", Labels: labels.Set{"rack": pick("a", "b")}}
		if rng.Intn(8) == 0 {
			node.Labels[ExcludeLabel] = "true"
		}
		in := Input{Services: svcs, Pools: pools, Advertisements: advs, Peers: peers, Node: node}
		got := PlanRoutes(in)

		// Order independence.
		shuffled := in
		shuffled.Services = append([]Service(nil), svcs...)
		shuffled.Advertisements = append([]*config.BGPAdvertisement(nil), advs...)
		shuffled.Peers = append([]*config.BGPPeer(nil), peers...)
		rng.Shuffle(len(shuffled.Services), func(i, j int) {
			shuffled.Services[i], shuffled.Services[j] = shuffled.Services[j], shuffled.Services[i]
		})
		rng.Shuffle(len(shuffled.Advertisements), func(i, j int) {
			shuffled.Advertisements[i], shuffled.Advertisements[j] = shuffled.Advertisements[j], shuffled.Advertisements[i]
		})
		rng.Shuffle(len(shuffled.Peers), func(i, j int) { shuffled.Peers[i], shuffled.Peers[j] = shuffled.Peers[j], shuffled.Peers[i] })
		if diff := cmp.Diff(got, PlanRoutes(shuffled), cmpOpts); diff != "" {
			t.Fatalf("iteration %d: plan depends on input order (-first +shuffled):\n%s", iter, diff)
		}

		svcByKey := map[string]Service{}
		for _, s := range svcs {
			svcByKey[s.Key] = s
		}
		advByName := map[string]*config.BGPAdvertisement{}
		for _, a := range advs {
			advByName[a.Name] = a
		}
		for _, pp := range got.Peers {
			p := byName[pp.Peer]
			if !p.SelectsNode(node.Labels) {
				t.Fatalf("iteration %d: session with %s, which does not select the node", iter, pp.Peer)
			}
			if node.Excluded() && len(pp.Routes) > 0 {
				t.Fatalf("iteration %d: excluded node advertises %+v", iter, pp.Routes)
			}
			for _, r := range pp.Routes {
				if !p.IsInternal() && r.LocalPref != 0 {
					t.Fatalf("iteration %d: localPref %d to eBGP peer %s", iter, r.LocalPref, pp.Peer)
				}
				if p.DisableMP && r.Prefix.Addr().Is4() != p.Address.Is4() {
					t.Fatalf("iteration %d: %s over a single-family session with %s", iter, r.Prefix, pp.Peer)
				}
				allowed := false
				for _, an := range r.Advertisements {
					if a := advByName[an]; a.SelectsPeer(pp.Peer) && a.SelectsNode(node.Labels) && r.Prefix.Bits() == a.AggregationLengthFor(r.Prefix.Addr()) {
						allowed = true
					}
				}
				if !allowed {
					t.Fatalf("iteration %d: route %+v to %s allowed by no advertisement", iter, r, pp.Peer)
				}
				for _, key := range r.Services {
					s := svcByKey[key]
					if s.LocalTraffic && !s.EndpointNodes[node.Name] {
						t.Fatalf("iteration %d: Local service %s without endpoint advertised", iter, key)
					}
					found := false
					for _, ip := range s.Addresses {
						found = found || r.Prefix.Contains(ip)
					}
					if !found {
						t.Fatalf("iteration %d: route %s names %s, whose addresses it does not carry", iter, r.Prefix, key)
					}
				}
			}
		}
		for _, pr := range got.Problems {
			if !strings.Contains(pr.Message, "localPref") && !strings.Contains(pr.Message, "aggregat") {
				t.Fatalf("iteration %d: unexpected problem %s", iter, pr)
			}
		}
	}
}
