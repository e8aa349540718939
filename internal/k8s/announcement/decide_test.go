package announcement

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
	"github.com/barelb/barelb/internal/k8s/servicecondition"
)

func pool(t *testing.T, name string, addrs ...string) *config.Pool {
	t.Helper()
	obj := &barelbv1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, a := range addrs {
		obj.Spec.Addresses = append(obj.Spec.Addresses, barelbv1beta1.AddressRange(a))
	}
	p, err := config.PoolFromAPI(obj)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func selector(kv ...string) []barelbv1beta1.Selector {
	m := map[string]barelbv1beta1.LabelValue{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = barelbv1beta1.LabelValue(kv[i+1])
	}
	return []barelbv1beta1.Selector{{MatchLabels: m}}
}

func l2adv(t *testing.T, name string, mutate func(*barelbv1beta1.L2AdvertisementSpec)) *config.L2Advertisement {
	t.Helper()
	obj := &barelbv1beta1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if mutate != nil {
		mutate(&obj.Spec)
	}
	a, err := config.L2AdvertisementFromAPI(obj)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func bgpadv(t *testing.T, name string, mutate func(*barelbv1beta1.BGPAdvertisementSpec)) *config.BGPAdvertisement {
	t.Helper()
	obj := &barelbv1beta1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if mutate != nil {
		mutate(&obj.Spec)
	}
	a, err := config.BGPAdvertisementFromAPI(obj, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func peer(t *testing.T, name string, nodeSelector []barelbv1beta1.Selector) *config.BGPPeer {
	t.Helper()
	obj := &barelbv1beta1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: barelbv1beta1.BGPPeerSpec{
		MyASN: 64500, PeerASN: 64501, PeerAddress: "198.51.100.254", NodeSelectors: nodeSelector}}
	p, err := config.BGPPeerFromAPI(obj, config.BGPPeerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDecide(t *testing.T) {
	vip := netip.MustParseAddr("203.0.113.10")
	p := pool(t, "public", "203.0.113.0/24")
	other := pool(t, "private", "198.51.100.0/28")
	nodes := []Node{
		{Name: "n1", Labels: labels.Set{"zone": "a"}, Ready: true, Speaker: true},
		{Name: "n2", Labels: labels.Set{"zone": "b"}, Ready: true, Speaker: true},
	}
	base := func(mutate func(*Input)) Input {
		in := Input{Addresses: []netip.Addr{vip}, PoolName: "public", Pool: p, Nodes: nodes,
			L2Advertisements: []*config.L2Advertisement{l2adv(t, "l2", nil)}}
		if mutate != nil {
			mutate(&in)
		}
		return in
	}
	bgpOnly := func(in *Input) {
		in.L2Advertisements = nil
		in.BGPAdvertisements = []*config.BGPAdvertisement{bgpadv(t, "bgp", nil)}
		in.Peers = []*config.BGPPeer{peer(t, "r1", nil)}
	}
	up := func(names ...string) map[string]bool {
		m := map[string]bool{}
		for _, n := range names {
			m[n] = true
		}
		return m
	}
	withSessions := func(s1, s2 map[string]bool) []Node {
		out := append([]Node(nil), nodes...)
		out[0].SessionsUp, out[1].SessionsUp = s1, s2
		return out
	}
	T, F := metav1.ConditionTrue, metav1.ConditionFalse
	for _, tc := range []struct {
		name string
		in   Input
		want servicecondition.Want
	}{
		{"no address", base(func(in *Input) { in.Addresses = nil }),
			servicecondition.Want{Status: F, Reason: "NoAddress", Message: "the Service has no address to announce (see the barelb.io/AddressAssigned condition)"}},
		{"an address barelb did not assign", base(func(in *Input) { in.Addresses = []netip.Addr{netip.MustParseAddr("192.0.2.1")} }),
			servicecondition.Want{Status: F, Reason: "NoAddress", Message: `status.loadBalancer holds 192.0.2.1, which is not in the pool barelb assigned from ("public"): speakers announce only addresses barelb assigned`}},
		{"layer 2: the node named by the ServiceL2Status", base(func(in *Input) {
			in.L2 = &L2Report{Node: "n2", Addresses: []string{"203.0.113.10"}, Interfaces: []string{"eth0"}}
		}), servicecondition.Want{Status: T, Reason: "Layer2", Message: "layer 2: node n2 answers ARP/NDP for 203.0.113.10 on eth0"}},
		{"a stale ServiceL2Status of another address does not count", base(func(in *Input) {
			in.L2 = &L2Report{Node: "n2", Addresses: []string{"203.0.113.99"}}
		}), servicecondition.Want{Status: F, Reason: "Pending", Message: "layer 2: no speaker reports answering for it yet (eligible nodes: n1, n2)"}},
		{"no advertisement covers the pool", base(func(in *Input) {
			in.L2Advertisements = []*config.L2Advertisement{l2adv(t, "l2", func(s *barelbv1beta1.L2AdvertisementSpec) { s.IPAddressPools = []string{"private"} })}
		}), servicecondition.Want{Status: F, Reason: "NoAdvertisement", Message: "no L2Advertisement or BGPAdvertisement covers pool public and selects this Service"}},
		{"an advertisement that does not select the Service", base(func(in *Input) {
			in.L2Advertisements = []*config.L2Advertisement{l2adv(t, "l2", func(s *barelbv1beta1.L2AdvertisementSpec) { s.ServiceSelectors = selector("tier", "edge") })}
		}), servicecondition.Want{Status: F, Reason: "NoAdvertisement", Message: "no L2Advertisement or BGPAdvertisement covers pool public and selects this Service"}},
		{"no node matches the advertisement's selector", base(func(in *Input) {
			in.L2Advertisements = []*config.L2Advertisement{l2adv(t, "l2", func(s *barelbv1beta1.L2AdvertisementSpec) { s.NodeSelectors = selector("zone", "c") })}
		}), servicecondition.Want{Status: F, Reason: "NoEligibleNode", Message: "layer 2: no Ready node running a speaker is selected by L2Advertisement l2"}},
		{"the selected node runs no speaker, the other is not Ready", base(func(in *Input) {
			in.Nodes = []Node{{Name: "n1", Ready: true}, {Name: "n2", Speaker: true}}
		}), servicecondition.Want{Status: F, Reason: "NoEligibleNode", Message: "layer 2: no Ready node running a speaker is selected by L2Advertisement l2"}},
		{"excluded nodes are not eligible", base(func(in *Input) {
			in.Nodes = []Node{{Name: "n1", Ready: true, Speaker: true, Excluded: true}}
		}), servicecondition.Want{Status: F, Reason: "NoEligibleNode", Message: "layer 2: no Ready node running a speaker is selected by L2Advertisement l2"}},
		{"Local without a ready endpoint on an eligible node", base(func(in *Input) {
			in.Local, in.EndpointNodes = true, map[string]bool{"n3": true}
		}), servicecondition.Want{Status: F, Reason: "NoReadyEndpoint", Message: "layer 2: externalTrafficPolicy is Local and none of the eligible nodes (n1, n2) has a ready endpoint"}},
		{"Local with a ready endpoint: waiting for the speaker", base(func(in *Input) {
			in.Local, in.EndpointNodes = true, map[string]bool{"n2": true}
		}), servicecondition.Want{Status: F, Reason: "Pending", Message: "layer 2: no speaker reports answering for it yet (eligible nodes: n1, n2)"}},
		{"Local sharing: no node has a ready endpoint of both Services", base(func(in *Input) {
			in.Local, in.EndpointNodes = true, map[string]bool{"n1": true}
			in.SharedLocal = []SharedService{{Name: "ns/b", EndpointNodes: map[string]bool{"n2": true}}}
		}), servicecondition.Want{Status: F, Reason: "NoCommonEndpoint", Message: "layer 2: the address is shared with ns/b (externalTrafficPolicy Local) and none of the eligible nodes (n1, n2) has a ready endpoint of every Local Service on it"}},
		{"Local sharing: a Cluster Service on the address of a Local one", base(func(in *Input) {
			in.SharedLocal = []SharedService{{Name: "ns/b", EndpointNodes: map[string]bool{"n3": true}}}
		}), servicecondition.Want{Status: F, Reason: "NoCommonEndpoint", Message: "layer 2: the address is shared with ns/b (externalTrafficPolicy Local) and none of the eligible nodes (n1, n2) has a ready endpoint of every Local Service on it"}},
		{"Local sharing: the Service's own endpoints missing is said first", base(func(in *Input) {
			in.Local, in.EndpointNodes = true, map[string]bool{}
			in.SharedLocal = []SharedService{{Name: "ns/b", EndpointNodes: map[string]bool{"n2": true}}}
		}), servicecondition.Want{Status: F, Reason: "NoReadyEndpoint", Message: "layer 2: externalTrafficPolicy is Local and none of the eligible nodes (n1, n2) has a ready endpoint"}},
		{"Local sharing: a node with endpoints of both: waiting for the speaker", base(func(in *Input) {
			in.Local, in.EndpointNodes = true, map[string]bool{"n1": true, "n2": true}
			in.SharedLocal = []SharedService{{Name: "ns/b", EndpointNodes: map[string]bool{"n2": true}}}
		}), servicecondition.Want{Status: F, Reason: "Pending", Message: "layer 2: no speaker reports answering for it yet (eligible nodes: n1, n2)"}},
		{"BGP: Local sharing without a common node", base(func(in *Input) {
			bgpOnly(in)
			in.Local, in.EndpointNodes = true, map[string]bool{"n1": true}
			in.SharedLocal = []SharedService{{Name: "ns/b", EndpointNodes: map[string]bool{"n2": true}}}
		}), servicecondition.Want{Status: F, Reason: "NoCommonEndpoint", Message: "BGP: the address is shared with ns/b (externalTrafficPolicy Local) and none of the eligible nodes (n1, n2) has a ready endpoint of every Local Service on it"}},
		{"BGP: Local sharing: only the common node's sessions count", base(func(in *Input) {
			bgpOnly(in)
			in.Local, in.EndpointNodes = true, map[string]bool{"n1": true, "n2": true}
			in.SharedLocal = []SharedService{{Name: "ns/b", EndpointNodes: map[string]bool{"n2": true}}}
			in.Nodes = withSessions(up("r1"), up())
		}), servicecondition.Want{Status: F, Reason: "NoBGPSessionUp", Message: "BGP: no session is established: r1 (from n2)"}},
		{"BGP: advertised over an established session", base(func(in *Input) {
			bgpOnly(in)
			in.Nodes = withSessions(up("r1"), up())
			in.BGP = []BGPReport{{Node: "n2", Peers: []string{"r1"}}, {Node: "n1", Peers: []string{"r1"}}}
		}), servicecondition.Want{Status: T, Reason: "BGP", Message: "BGP: advertised to r1 by node n1"}},
		{"BGP: a speaker that does not say which sessions are up is taken at its word", base(func(in *Input) {
			bgpOnly(in)
			in.BGP = []BGPReport{{Node: "n1", Peers: []string{"r1"}}, {Node: "n2", Peers: []string{"r1"}}}
		}), servicecondition.Want{Status: T, Reason: "BGP", Message: "BGP: advertised to r1 by node n1, n2"}},
		{"BGP: advertised, but no session established", base(func(in *Input) {
			bgpOnly(in)
			in.Nodes = withSessions(up(), up())
			in.BGP = []BGPReport{{Node: "n1", Peers: []string{"r1"}}}
		}), servicecondition.Want{Status: F, Reason: "NoBGPSessionUp", Message: "BGP: advertised to r1 (from n1), but no session is established"}},
		{"BGP: not reported, and no session established", base(func(in *Input) {
			bgpOnly(in)
			in.Nodes = withSessions(up(), up())
		}), servicecondition.Want{Status: F, Reason: "NoBGPSessionUp", Message: "BGP: no session is established: r1 (from n1), r1 (from n2)"}},
		{"BGP: no peer selects an eligible node", base(func(in *Input) {
			bgpOnly(in)
			in.Peers = []*config.BGPPeer{peer(t, "r1", selector("zone", "c"))}
		}), servicecondition.Want{Status: F, Reason: "NoBGPPeer", Message: "BGP: no BGPPeer that BGPAdvertisement bgp goes to selects an eligible node"}},
		{"BGP: the advertisement goes to another peer", base(func(in *Input) {
			bgpOnly(in)
			in.BGPAdvertisements = []*config.BGPAdvertisement{bgpadv(t, "bgp", func(s *barelbv1beta1.BGPAdvertisementSpec) { s.Peers = []string{"r9"} })}
		}), servicecondition.Want{Status: F, Reason: "NoBGPPeer", Message: "BGP: no BGPPeer that BGPAdvertisement bgp goes to selects an eligible node"}},
		{"BGP: Local without endpoints", base(func(in *Input) {
			bgpOnly(in)
			in.Local = true
		}), servicecondition.Want{Status: F, Reason: "NoReadyEndpoint", Message: "BGP: externalTrafficPolicy is Local and no node selected by BGPAdvertisement bgp has a ready endpoint"}},
		{"BGP: no node selected", base(func(in *Input) {
			bgpOnly(in)
			in.BGPAdvertisements = []*config.BGPAdvertisement{bgpadv(t, "bgp", func(s *barelbv1beta1.BGPAdvertisementSpec) { s.NodeSelectors = selector("zone", "c") })}
		}), servicecondition.Want{Status: F, Reason: "NoEligibleNode", Message: "BGP: no node running a speaker is selected by BGPAdvertisement bgp"}},
		{"BGP: sessions up, not reported yet", base(func(in *Input) {
			bgpOnly(in)
			in.Nodes = withSessions(up("r1"), nil)
		}), servicecondition.Want{Status: F, Reason: "Pending", Message: "BGP: no speaker reports advertising it yet (sessions: r1 (from n1), r1 (from n2))"}},
		{"both modes: announced in layer 2, BGP sessions down", base(func(in *Input) {
			in.BGPAdvertisements = []*config.BGPAdvertisement{bgpadv(t, "bgp", nil)}
			in.Peers = []*config.BGPPeer{peer(t, "r1", nil)}
			in.Nodes = withSessions(up(), up())
			in.L2 = &L2Report{Node: "n1", Addresses: []string{"203.0.113.10"}}
			in.BGP = []BGPReport{{Node: "n1", Peers: []string{"r1"}}}
		}), servicecondition.Want{Status: T, Reason: "Layer2", Message: "layer 2: node n1 answers ARP/NDP for 203.0.113.10; BGP: advertised to r1 (from n1), but no session is established"}},
		{"both modes announced", base(func(in *Input) {
			in.BGPAdvertisements = []*config.BGPAdvertisement{bgpadv(t, "bgp", nil)}
			in.Peers = []*config.BGPPeer{peer(t, "r1", nil)}
			in.L2 = &L2Report{Node: "n1", Addresses: []string{"203.0.113.10"}}
			in.BGP = []BGPReport{{Node: "n1", Peers: []string{"r1"}}}
		}), servicecondition.Want{Status: T, Reason: "Layer2AndBGP", Message: "layer 2: node n1 answers ARP/NDP for 203.0.113.10; BGP: advertised to r1 by node n1"}},
		{"both modes, neither announced: the more telling reason wins", base(func(in *Input) {
			in.BGPAdvertisements = []*config.BGPAdvertisement{bgpadv(t, "bgp", nil)}
			in.Peers = []*config.BGPPeer{peer(t, "r1", nil)}
			in.Nodes = withSessions(up(), up())
		}), servicecondition.Want{Status: F, Reason: "NoBGPSessionUp", Message: "layer 2: no speaker reports answering for it yet (eligible nodes: n1, n2); BGP: no session is established: r1 (from n1), r1 (from n2)"}},
		{"pool unknown to the speakers", base(func(in *Input) { in.Pool, in.PoolName = other, "private" }),
			servicecondition.Want{Status: F, Reason: "NoAddress", Message: `status.loadBalancer holds 203.0.113.10, which is not in the pool barelb assigned from ("private"): speakers announce only addresses barelb assigned`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Decide(tc.in)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
			// Whatever it says, the API server's rules for a condition hold.
			cond := servicecondition.Next(nil, barelbv1beta1.ConditionAnnounced, got, 1, testNow)
			if errs := validation.ValidateConditions([]metav1.Condition{cond}, field.NewPath("conditions")); len(errs) > 0 {
				t.Errorf("invalid condition: %v", errs)
			}
		})
	}
}

func TestFew(t *testing.T) {
	names := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	if got, want := few(names), "a, b, c, d, e, f, g, h and 2 more"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

var testNow = time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
