package election

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
)

// Nodes on two segments: each address is elected among the nodes of its
// own segment, and stays there when its node dies; an address outside
// every subnet goes to any node, and the plan says so; an advertisement
// that names interfaces, and a node whose subnets are unknown, are not
// held to the subnets.
func TestPlanL2Subnets(t *testing.T) {
	lanA, lanB := netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.128/26")
	v6A := netip.MustParsePrefix("2001:db8:100::/64")
	nodes := func(dead ...string) []L2Node {
		ns := []L2Node{
			{Name: "a1", Alive: true, Subnets: []netip.Prefix{lanA, v6A}},
			{Name: "a2", Alive: true, Subnets: []netip.Prefix{netip.MustParsePrefix("198.51.100.12/24"), v6A}},
			{Name: "b1", Alive: true, Subnets: []netip.Prefix{lanB}},
			{Name: "b2", Alive: true, Subnets: []netip.Prefix{lanB}},
		}
		for i := range ns {
			for _, d := range dead {
				if ns[i].Name == d {
					ns[i].Alive = false
				}
			}
		}
		return ns
	}
	pools := map[string]*config.Pool{"lan": {Name: "lan"}}
	all := []*config.L2Advertisement{l2adv(t, barelbv1beta1.L2AdvertisementSpec{})}
	named := []*config.L2Advertisement{l2adv(t, barelbv1beta1.L2AdvertisementSpec{Interfaces: []string{"eth0"}})}
	svc := func(addrs ...string) []L2Service {
		var out []L2Service
		for _, a := range addrs {
			out = append(out, L2Service{Key: "ns/" + a, Pool: "lan", Addresses: []netip.Addr{netip.MustParseAddr(a)}})
		}
		return out
	}
	type placed struct {
		Node    string
		Outside bool
	}
	plan := func(services []L2Service, advs []*config.L2Advertisement, nodes []L2Node) map[string]placed {
		out := map[string]placed{}
		for _, a := range PlanL2(services, pools, advs, nodes) {
			out[a.Address.String()] = placed{a.Node, a.OutsideSubnets}
		}
		return out
	}
	in := func(names ...string) func(placed) bool {
		return func(p placed) bool {
			for _, n := range names {
				if p.Node == n {
					return !p.Outside
				}
			}
			return false
		}
	}
	for _, tc := range []struct {
		name     string
		services []L2Service
		advs     []*config.L2Advertisement
		nodes    []L2Node
		want     map[string]func(placed) bool
	}{
		{"each address on its segment", svc("198.51.100.200", "203.0.113.150", "2001:db8:100::200"), all, nodes(),
			map[string]func(placed) bool{"198.51.100.200": in("a1", "a2"), "203.0.113.150": in("b1", "b2"), "2001:db8:100::200": in("a1", "a2")}},
		{"failover stays on the segment", svc("198.51.100.200", "203.0.113.150"), all, nodes("a1", "b2"),
			map[string]func(placed) bool{"198.51.100.200": in("a2"), "203.0.113.150": in("b1")}},
		{"a segment with no live node is not answered from another", svc("198.51.100.200", "203.0.113.150"), all, nodes("a1", "a2"),
			map[string]func(placed) bool{"203.0.113.150": in("b1", "b2")}},
		{"outside every subnet: any node, said", svc("192.0.2.9"), all, nodes(),
			map[string]func(placed) bool{"192.0.2.9": func(p placed) bool { return p.Outside && p.Node != "" }}},
		{"named interfaces: not held to subnets", svc("203.0.113.150"), named, nodes("b1", "b2"),
			map[string]func(placed) bool{"203.0.113.150": in("a1", "a2")}},
		{"unknown subnets: a candidate everywhere", svc("203.0.113.150"), all,
			append(nodes("b1", "b2"), L2Node{Name: "old", Alive: true}),
			map[string]func(placed) bool{"203.0.113.150": in("old")}},
	} {
		got := plan(tc.services, tc.advs, tc.nodes)
		if len(got) != len(tc.want) {
			t.Errorf("%s: %d addresses placed, want %d: %v", tc.name, len(got), len(tc.want), got)
		}
		for addr, ok := range tc.want {
			if !ok(got[addr]) {
				t.Errorf("%s: %s placed %+v", tc.name, addr, got[addr])
			}
		}
	}
	// The nodes of a segment share its addresses evenly.
	var many []string
	for i := range 40 {
		many = append(many, netip.AddrFrom4([4]byte{203, 0, 113, byte(130 + i)}).String(), netip.AddrFrom4([4]byte{198, 51, 100, byte(150 + i)}).String())
	}
	load := map[string]int{}
	for _, p := range plan(svc(many...), all, nodes()) {
		load[p.Node]++
	}
	if diff := cmp.Diff(map[string]int{"a1": 20, "a2": 20, "b1": 20, "b2": 20}, load, cmp.Comparer(func(a, b int) bool { return a-b <= 1 && b-a <= 1 })); diff != "" {
		t.Errorf("load (-want +got):\n%s", diff)
	}
}
