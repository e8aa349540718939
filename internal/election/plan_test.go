package election

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
)

func l2adv(t testing.TB, spec barelbv1beta1.L2AdvertisementSpec) *config.L2Advertisement {
	t.Helper()
	a, err := config.L2AdvertisementFromAPI(&barelbv1beta1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "adv"}, Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func sel(k, v string) barelbv1beta1.Selector {
	return barelbv1beta1.Selector{MatchLabels: map[string]barelbv1beta1.LabelValue{k: barelbv1beta1.LabelValue(v)}}
}

func TestPlanL2(t *testing.T) {
	lanPool := &config.Pool{Name: "lan", Labels: labels.Set{"tier": "public"}}
	otherPool := &config.Pool{Name: "other"}
	pools := map[string]*config.Pool{"lan": lanPool, "other": otherPool}
	vip := netip.MustParseAddr("198.51.100.200")
	nodes := []L2Node{
		{Name: "n1", Alive: true, Labels: labels.Set{"zone": "a", "edge": "true"}},
		{Name: "n2", Alive: true, Labels: labels.Set{"zone": "b", "edge": "true"}},
		{Name: "n3", Alive: true, Labels: labels.Set{"zone": "b"}},
	}
	web := L2Service{Key: "shop/web", Pool: "lan", Addresses: []netip.Addr{vip}, Labels: labels.Set{"app": "web"}}
	all := l2adv(t, barelbv1beta1.L2AdvertisementSpec{})
	winnerOf := func(candidates ...string) string {
		var ns []Node
		for _, c := range candidates {
			ns = append(ns, Node{Name: c, Alive: true, Selected: true})
		}
		w, _ := Winner(vip.String(), ns, false)
		return w
	}

	tests := []struct {
		name     string
		services []L2Service
		advs     []*config.L2Advertisement
		nodes    []L2Node
		want     []L2Announcement
	}{
		{"one advertisement for every pool", []L2Service{web}, []*config.L2Advertisement{all}, nodes,
			[]L2Announcement{{Address: vip, Key: vip, Node: winnerOf("n1", "n2", "n3"), Owner: winnerOf("n1", "n2", "n3"), Services: []string{"shop/web"}}}},
		{"no advertisement, no announcement", []L2Service{web}, nil, nodes, []L2Announcement{}},
		{"advertisement of another pool", []L2Service{web},
			[]*config.L2Advertisement{l2adv(t, barelbv1beta1.L2AdvertisementSpec{IPAddressPools: []string{"other"}})}, nodes, []L2Announcement{}},
		{"pool chosen by label, nodes by selector", []L2Service{web},
			[]*config.L2Advertisement{l2adv(t, barelbv1beta1.L2AdvertisementSpec{
				IPAddressPoolSelectors: []barelbv1beta1.Selector{sel("tier", "public")},
				NodeSelectors:          []barelbv1beta1.Selector{sel("zone", "b")},
			})}, nodes,
			[]L2Announcement{{Address: vip, Key: vip, Node: winnerOf("n2", "n3"), Owner: winnerOf("n2", "n3"), Services: []string{"shop/web"}}}},
		{"service selector leaves the Service out", []L2Service{web},
			[]*config.L2Advertisement{l2adv(t, barelbv1beta1.L2AdvertisementSpec{ServiceSelectors: []barelbv1beta1.Selector{sel("app", "db")}})}, nodes, []L2Announcement{}},
		{"local traffic: only the node with an endpoint", []L2Service{{Key: "shop/web", Pool: "lan", Addresses: []netip.Addr{vip}, LocalTraffic: true, EndpointNodes: map[string]bool{"n3": true}}},
			[]*config.L2Advertisement{all}, nodes,
			[]L2Announcement{{Address: vip, Key: vip, Node: "n3", Owner: "n3", Services: []string{"shop/web"}}}},
		{"dead and excluded nodes never announce", []L2Service{web}, []*config.L2Advertisement{all},
			[]L2Node{{Name: "n1", Alive: false}, {Name: "n2", Alive: true, Excluded: true}, {Name: "n3", Alive: true}},
			[]L2Announcement{{Address: vip, Key: vip, Node: "n3", Owner: winnerOf("n1", "n3"), Services: []string{"shop/web"}}}},
		{"a drained node hands its address to another candidate", []L2Service{web}, []*config.L2Advertisement{all},
			[]L2Node{{Name: "n1", Alive: true}, {Name: "n2", Alive: true, Drained: true}, {Name: "n3", Alive: true}},
			[]L2Announcement{{Address: vip, Key: vip, Node: winnerOf("n1", "n3"), Owner: winnerOf("n1", "n3"), Services: []string{"shop/web"}}}},
		{"a drained node is the last resort", []L2Service{web}, []*config.L2Advertisement{all},
			[]L2Node{{Name: "n1", Alive: false}, {Name: "n2", Alive: true, Drained: true}, {Name: "n3", Alive: true, Excluded: true}},
			[]L2Announcement{{Address: vip, Key: vip, Node: "n2", Services: []string{"shop/web"}}}},
		{"a dead drained node is no last resort", []L2Service{web}, []*config.L2Advertisement{all},
			[]L2Node{{Name: "n1", Alive: false}, {Name: "n2", Alive: false, Drained: true}},
			[]L2Announcement{}},
		{"a preferred drained node loses to an unpreferred one", []L2Service{web},
			[]*config.L2Advertisement{l2adv(t, barelbv1beta1.L2AdvertisementSpec{PreferredNodeSelectors: []barelbv1beta1.WeightedNodeSelector{{Weight: 50, Preference: sel("zone", "a")}}})},
			[]L2Node{{Name: "n1", Alive: true, Drained: true, Labels: labels.Set{"zone": "a"}}, {Name: "n3", Alive: true, Labels: labels.Set{"zone": "b"}}},
			[]L2Announcement{{Address: vip, Key: vip, Node: "n3", Owner: "n3", Services: []string{"shop/web"}}}},
		{"preferred node wins while alive", []L2Service{web},
			[]*config.L2Advertisement{l2adv(t, barelbv1beta1.L2AdvertisementSpec{PreferredNodeSelectors: []barelbv1beta1.WeightedNodeSelector{{Weight: 50, Preference: sel("zone", "a")}}})}, nodes,
			[]L2Announcement{{Address: vip, Key: vip, Node: "n1", Owner: "n1", Services: []string{"shop/web"}}}},
		{"shared address: one announcement for both Services", []L2Service{web, {Key: "shop/dns", Pool: "lan", Addresses: []netip.Addr{vip}}},
			[]*config.L2Advertisement{l2adv(t, barelbv1beta1.L2AdvertisementSpec{NodeSelectors: []barelbv1beta1.Selector{sel("edge", "true")}, Interfaces: []string{"eth1"}}),
				l2adv(t, barelbv1beta1.L2AdvertisementSpec{NodeSelectors: []barelbv1beta1.Selector{sel("zone", "a")}, Interfaces: []string{"eth0"}})}, nodes,
			[]L2Announcement{{Address: vip, Key: vip, Node: winnerOf("n1", "n2"), Owner: winnerOf("n1", "n2"), Interfaces: map[string][]string{"n1": {"eth0", "eth1"}, "n2": {"eth1"}}[winnerOf("n1", "n2")], Services: []string{"shop/dns", "shop/web"}}}},
	}
	for _, tc := range tests {
		got := PlanL2(tc.services, pools, tc.advs, tc.nodes)
		if diff := cmp.Diff(tc.want, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
			t.Errorf("%s: plan (-want +got):\n%s", tc.name, diff)
		}
	}
}

// A dual-stack Service's addresses, and addresses linked through Services
// sharing them, are always announced by one node, whatever the hashes of
// the single addresses say.
func TestPlanL2KeepsGroupsTogether(t *testing.T) {
	pools := map[string]*config.Pool{"lan": {Name: "lan"}}
	all := l2adv(t, barelbv1beta1.L2AdvertisementSpec{})
	var nodes []L2Node
	for _, n := range []string{"n1", "n2", "n3", "n4", "n5"} {
		nodes = append(nodes, L2Node{Name: n, Alive: true})
	}
	for i := 0; i < 200; i++ {
		v4 := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		v6 := netip.MustParseAddr("2001:db8:100::").Next()
		for j := 0; j < i; j++ {
			v6 = v6.Next()
		}
		other := netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
		services := []L2Service{
			{Key: "ns/dual", Pool: "lan", Addresses: []netip.Addr{v4, v6}},
			// Shares the IPv6 address, has its own IPv4 one.
			{Key: "ns/shares-v6", Pool: "lan", Addresses: []netip.Addr{other, v6}},
		}
		plan := PlanL2(services, pools, []*config.L2Advertisement{all}, nodes)
		if len(plan) != 3 {
			t.Fatalf("round %d: %d announcements, want 3", i, len(plan))
		}
		for _, a := range plan[1:] {
			if a.Node != plan[0].Node {
				t.Fatalf("round %d: group split over %s and %s: %+v", i, plan[0].Node, a.Node, plan)
			}
		}
		// One key for the group, so that arbitration between speakers
		// that disagree keeps it together too.
		for _, a := range plan {
			want := v4
			if other.Less(v4) {
				want = other
			}
			if a.Key != want {
				t.Fatalf("round %d: %s elected under key %s, want the group's lowest address %s", i, a.Address, a.Key, want)
			}
		}
	}
}

// Two speakers that both answer for an address without seeing each other
// agree on who keeps it, whichever asks; and where every node is
// eligible, the node the whole cluster elects wins against each other
// one, so a partition that heals moves nothing. The plan balances (500
// dual-stack Services over 5 nodes put many addresses elsewhere than
// their rendezvous winner), so the contest asks ArbitrateOwned with the
// plan's owner.
func TestArbitrateAgreesWithThePlan(t *testing.T) {
	pools := map[string]*config.Pool{"lan": {Name: "lan"}}
	advs := []*config.L2Advertisement{l2adv(t, barelbv1beta1.L2AdvertisementSpec{})}
	names := []string{"node1", "node2", "node3", "node4", "node5"}
	var nodes []L2Node
	for _, n := range names {
		nodes = append(nodes, L2Node{Name: n, Alive: true})
	}
	var services []L2Service
	for i := range 500 {
		v4 := netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
		v6 := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)})
		services = append(services, L2Service{Key: fmt.Sprintf("ns/svc-%d", i), Pool: "lan", Addresses: []netip.Addr{v4, v6}})
	}
	for _, a := range PlanL2(services, pools, advs, nodes) {
		for _, other := range names {
			key := a.Key.String()
			if got, back := ArbitrateOwned(key, a.Owner, a.Node, other), ArbitrateOwned(key, a.Owner, other, a.Node); got != back {
				t.Fatalf("%s: %s against %s: %s asking, %s asked", a.Address, a.Node, other, got, back)
			}
			if got := ArbitrateOwned(key, a.Owner, other, a.Node); got != a.Node {
				t.Fatalf("%s (key %s): the plan elects %s, but %s wins the arbitration against it", a.Address, key, a.Node, got)
			}
		}
	}
}

// BenchmarkPlanL2 is one plan of a large cluster: 10,000 Services of one
// pool, three nodes, one advertisement. The plan runs on every event in
// every speaker; its allocations are most of the speaker's garbage.
func BenchmarkPlanL2(b *testing.B) {
	pools := map[string]*config.Pool{"lan": {Name: "lan"}}
	advs := []*config.L2Advertisement{l2adv(b, barelbv1beta1.L2AdvertisementSpec{})}
	nodes := []L2Node{{Name: "n1", Alive: true}, {Name: "n2", Alive: true}, {Name: "n3", Alive: true}}
	var services []L2Service
	for i := range 10000 {
		ip := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		services = append(services, L2Service{Key: fmt.Sprintf("bench/svc-%05d", i), Pool: "lan", Addresses: []netip.Addr{ip}})
	}
	b.ReportAllocs()
	for b.Loop() {
		if got := PlanL2(services, pools, advs, nodes); len(got) != len(services) {
			b.Fatalf("%d announcements, want %d", len(got), len(services))
		}
	}
}

// TestPlanL2Drain: draining a node moves only its addresses (its
// undrain is the plan from before, the same inputs).
func TestPlanL2Drain(t *testing.T) {
	pools := map[string]*config.Pool{"lan": {Name: "lan"}}
	advs := []*config.L2Advertisement{l2adv(t, barelbv1beta1.L2AdvertisementSpec{})}
	var services []L2Service
	for i := range 40 {
		services = append(services, L2Service{Key: fmt.Sprintf("ns/s%d", i), Pool: "lan",
			Addresses: []netip.Addr{netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})}})
	}
	nodes := func(drained string) []L2Node {
		var out []L2Node
		for _, n := range []string{"n1", "n2", "n3", "n4"} {
			out = append(out, L2Node{Name: n, Alive: true, Drained: n == drained})
		}
		return out
	}
	byAddr := func(plan []L2Announcement) map[netip.Addr]string {
		out := map[netip.Addr]string{}
		for _, a := range plan {
			out[a.Address] = a.Node
		}
		return out
	}
	before := byAddr(PlanL2(services, pools, advs, nodes("")))
	drained := byAddr(PlanL2(services, pools, advs, nodes("n2")))
	if len(drained) != len(services) {
		t.Fatalf("drained plan announces %d addresses, want %d", len(drained), len(services))
	}
	moved := 0
	for ip, node := range before {
		switch {
		case drained[ip] == "n2":
			t.Errorf("%s stays on the drained node", ip)
		case node != "n2" && drained[ip] != node:
			t.Errorf("%s moved from %s to %s, although %s is not drained", ip, node, drained[ip], node)
		case node == "n2":
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("n2 announced nothing before the drain: the test proves nothing")
	}
}
