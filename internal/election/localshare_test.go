package election

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
)

// TestPlanL2LocalSharing: an address shared by Services with
// externalTrafficPolicy Local and different backends is announced only
// from a node holding a ready endpoint of every one of them; with no such
// node, it is announced by nobody and the plan names who reports it.
func TestPlanL2LocalSharing(t *testing.T) {
	pools := map[string]*config.Pool{"lan": {Name: "lan"}}
	advs := []*config.L2Advertisement{l2adv(t, barelbv1beta1.L2AdvertisementSpec{})}
	v4, v6 := netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("2001:db8::10")
	nodes := []L2Node{{Name: "n1", Alive: true}, {Name: "n2", Alive: true}, {Name: "n3", Alive: true}, {Name: "n4", Alive: false}}
	local := func(key string, eps ...string) L2Service {
		s := L2Service{Key: key, Pool: "lan", Addresses: []netip.Addr{v4, v6}, LocalTraffic: true, EndpointNodes: map[string]bool{}}
		for _, n := range eps {
			s.EndpointNodes[n] = true
		}
		return s
	}
	cluster := L2Service{Key: "ns/cluster", Pool: "lan", Addresses: []netip.Addr{v4, v6}}
	winner := func(key netip.Addr, names ...string) string {
		var ns []Node
		for _, n := range names {
			ns = append(ns, Node{Name: n, Alive: true, Selected: true})
		}
		w, _ := Winner(key.String(), ns, false)
		return w
	}
	on := func(node string, services ...string) []L2Announcement {
		return []L2Announcement{
			{Address: v4, Key: v4, Node: node, Owner: node, Services: services},
			{Address: v6, Key: v4, Node: node, Owner: node, Services: services},
		}
	}
	tests := []struct {
		name     string
		services []L2Service
		want     []L2Announcement
	}{
		{"the one node with endpoints of both", []L2Service{local("ns/a", "n1", "n2"), local("ns/b", "n2", "n3")},
			on("n2", "ns/a", "ns/b")},
		{"several nodes with both: elected among them", []L2Service{local("ns/a", "n1", "n2", "n3"), local("ns/b", "n2", "n3")},
			on(winner(v4, "n2", "n3"), "ns/a", "ns/b")},
		{"three Services", []L2Service{local("ns/a", "n1", "n2", "n3"), local("ns/b", "n2", "n3"), local("ns/c", "n1", "n3")},
			on("n3", "ns/a", "ns/b", "ns/c")},
		{"a Cluster Service adds no constraint", []L2Service{cluster, local("ns/b", "n3")},
			on("n3", "ns/b", "ns/cluster")},
		{"the common node is dead: nobody announces, and it is reported", []L2Service{local("ns/a", "n1", "n4"), local("ns/b", "n3", "n4")},
			[]L2Announcement{
				{Address: v4, Key: v4, Services: []string{"ns/a", "ns/b"}, NoCommonEndpoint: true, Reporter: winner(v4, "n1", "n3")},
				{Address: v6, Key: v6, Services: []string{"ns/a", "ns/b"}, NoCommonEndpoint: true, Reporter: winner(v6, "n1", "n3")},
			}},
		{"no node with endpoints of both", []L2Service{local("ns/a", "n1"), local("ns/b", "n2")},
			[]L2Announcement{
				{Address: v4, Key: v4, Services: []string{"ns/a", "ns/b"}, NoCommonEndpoint: true, Reporter: winner(v4, "n1", "n2")},
				{Address: v6, Key: v6, Services: []string{"ns/a", "ns/b"}, NoCommonEndpoint: true, Reporter: winner(v6, "n1", "n2")},
			}},
		{"one Service without endpoints: reported by a node of the other", []L2Service{local("ns/a", "n1"), local("ns/b")},
			[]L2Announcement{
				{Address: v4, Key: v4, Services: []string{"ns/a", "ns/b"}, NoCommonEndpoint: true, Reporter: "n1"},
				{Address: v6, Key: v6, Services: []string{"ns/a", "ns/b"}, NoCommonEndpoint: true, Reporter: "n1"},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PlanL2(tt.services, pools, advs, nodes)
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
				t.Errorf("PlanL2 (-want +got):\n%s", diff)
			}
		})
	}
}
