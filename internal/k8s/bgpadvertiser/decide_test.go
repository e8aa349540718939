package bgpadvertiser

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/bfd"
	"github.com/barelb/barelb/internal/bgp"
	"github.com/barelb/barelb/internal/bgpplan"
	"github.com/barelb/barelb/internal/config"
)

func testPeer(name string, mutate func(*barelbv1beta1.BGPPeerSpec)) *barelbv1beta1.BGPPeer {
	p := &barelbv1beta1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
	p.Spec = barelbv1beta1.BGPPeerSpec{MyASN: 64500, PeerASN: 64501, PeerAddress: "198.51.100.100"}
	if mutate != nil {
		mutate(&p.Spec)
	}
	return p
}

func testAdv(name string, mutate func(*barelbv1beta1.BGPAdvertisementSpec)) *barelbv1beta1.BGPAdvertisement {
	a := &barelbv1beta1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
	if mutate != nil {
		mutate(&a.Spec)
	}
	return a
}

func testWorld(t *testing.T) world {
	t.Helper()
	pool, err := config.PoolFromAPI(&barelbv1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: "vips"},
		Spec: barelbv1beta1.IPAddressPoolSpec{Addresses: []barelbv1beta1.AddressRange{"203.0.113.0/24", "2001:db8:5::/64"}}})
	if err != nil {
		t.Fatal(err)
	}
	return world{
		Node:    bgpplan.Node{Name: "n1", Labels: labels.Set{"rack": "a"}},
		NodeIPs: []netip.Addr{netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("2001:db8:100::1")},
		Services: []bgpplan.Service{{Key: "default/web", Pool: "vips",
			Addresses: []netip.Addr{netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("2001:db8:5::7")}}},
		Pools:   map[string]*config.Pool{"vips": pool},
		Peers:   []*barelbv1beta1.BGPPeer{testPeer("router", nil)},
		Advs:    []*barelbv1beta1.BGPAdvertisement{testAdv("all", nil)},
		Secrets: map[string]*corev1.Secret{},
	}
}

func secret(name, password string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}, Type: corev1.SecretTypeBasicAuth, Data: map[string][]byte{}}
	if password != "" {
		s.Data[corev1.BasicAuthPasswordKey] = []byte(password)
	}
	return s
}

func TestDecideSessions(t *testing.T) {
	v4, v6 := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("2001:db8:100::1")
	router := netip.MustParseAddr("198.51.100.100")
	base := bgp.Peer{Name: "router", Address: router, Port: 179, ASN: 64501, LocalASN: 64500,
		HoldTime: 90 * time.Second, KeepaliveTime: 30 * time.Second, ConnectRetry: 5 * time.Second,
		NextHopV4: v4, NextHopV6: v6}
	with := func(f func(*bgp.Peer)) bgp.Peer { p := base; f(&p); return p }
	tests := []struct {
		name      string
		change    func(*world)
		peers     []bgp.Peer
		passwords map[string]string
		problem   string // in PeerProblems["router"]
		bfd       map[string]bfd.Peer
	}{
		{name: "a peer selecting the node", peers: []bgp.Peer{base}},
		{name: "a peer selecting other nodes is not opened, and not a problem",
			change: func(w *world) {
				w.Peers[0].Spec.NodeSelectors = []barelbv1beta1.Selector{{MatchLabels: map[string]barelbv1beta1.LabelValue{"rack": "b"}}}
			}},
		{name: "settings carried over",
			change: func(w *world) {
				s := &w.Peers[0].Spec
				s.PeerPort, s.SourceAddress, s.RouterID = 1179, "198.51.100.2", "10.0.0.1"
				s.HoldTime, s.KeepaliveTime, s.ConnectTime = &metav1.Duration{Duration: 9 * time.Second}, &metav1.Duration{Duration: 3 * time.Second}, &metav1.Duration{Duration: 2 * time.Second}
				s.EBGPMultiHop, s.EnableGracefulRestart, s.DisableMP, s.Password = true, true, true, "pw"
			},
			peers: []bgp.Peer{with(func(p *bgp.Peer) {
				p.Port, p.SourceAddress, p.RouterID = 1179, netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("10.0.0.1")
				p.HoldTime, p.KeepaliveTime, p.ConnectRetry = 9*time.Second, 3*time.Second, 2*time.Second
				p.EBGPMultiHopTTL, p.GracefulRestart, p.DisableMP, p.Password = 255, true, true, "pw"
			})},
			passwords: map[string]string{"router": ""}},
		{name: "dynamic internal ASN is ours",
			change: func(w *world) { w.Peers[0].Spec.PeerASN, w.Peers[0].Spec.DynamicASN = 0, "internal" },
			peers:  []bgp.Peer{with(func(p *bgp.Peer) { p.ASN = 64500 })}},
		{name: "dynamic external ASN accepts any",
			change: func(w *world) { w.Peers[0].Spec.PeerASN, w.Peers[0].Spec.DynamicASN = 0, "external" },
			peers:  []bgp.Peer{with(func(p *bgp.Peer) { p.ASN = 0 })}},
		{name: "passwordSecret missing: not opened, a problem naming the Secret",
			change:  func(w *world) { w.Peers[0].Spec.PasswordSecret = &barelbv1beta1.SecretRef{Name: "md5"} },
			problem: "passwordSecret barelb-system/md5: no such Secret"},
		{name: "passwordSecret without the password key",
			change: func(w *world) {
				w.Peers[0].Spec.PasswordSecret = &barelbv1beta1.SecretRef{Name: "md5"}
				w.Secrets["md5"] = secret("md5", "")
			},
			problem: `has no "password" key`},
		{name: "passwordSecret read",
			change: func(w *world) {
				w.Peers[0].Spec.PasswordSecret = &barelbv1beta1.SecretRef{Name: "md5"}
				w.Secrets["md5"] = secret("md5", "s3cret")
			},
			peers:     []bgp.Peer{with(func(p *bgp.Peer) { p.Password = "s3cret" })},
			passwords: map[string]string{"router": "md5"}},
		{name: "passwordSecret in another namespace is refused",
			change: func(w *world) {
				w.Peers[0].Spec.PasswordSecret = &barelbv1beta1.SecretRef{Name: "md5", Namespace: "kube-system"}
			},
			problem: "must be in the peer's own namespace"},
		{name: "impossible ASN mix",
			change:  func(w *world) { w.Peers[0].Spec.DynamicASN = "external" },
			problem: "set exactly one of peerASN and dynamicASN, not both"},
		{name: "an unnumbered peer: a session over the interface",
			change: func(w *world) { w.Peers[0].Spec.PeerAddress, w.Peers[0].Spec.Interface = "", "eth0" },
			peers:  []bgp.Peer{with(func(p *bgp.Peer) { p.Address, p.Interface = netip.Addr{}, "eth0" })}},
		{name: "an unnumbered peer with a bfdProfile: the session runs without BFD, and says so",
			change: func(w *world) {
				w.Peers[0].Spec.PeerAddress, w.Peers[0].Spec.Interface, w.Peers[0].Spec.BFDProfile = "", "eth0", "fast"
				w.Profiles = []*barelbv1beta1.BFDProfile{{ObjectMeta: metav1.ObjectMeta{Name: "fast"}}}
			},
			peers:   []bgp.Peer{with(func(p *bgp.Peer) { p.Address, p.Interface = netip.Addr{}, "eth0" })},
			problem: "BFD over an unnumbered session (interface eth0) is not supported; the session runs without BFD"},
		{name: "source address of the other family",
			change:  func(w *world) { w.Peers[0].Spec.SourceAddress = "2001:db8:100::1" },
			problem: "different families"},
		{name: "bfdProfile that does not exist",
			change:  func(w *world) { w.Peers[0].Spec.BFDProfile = "fast" },
			problem: `bfdProfile "fast": no such BFDProfile`},
		{name: "bfdProfile used",
			change: func(w *world) {
				w.Peers[0].Spec.BFDProfile = "fast"
				w.Peers[0].Spec.SourceAddress = "198.51.100.2"
				rx := uint32(100)
				w.Profiles = []*barelbv1beta1.BFDProfile{{ObjectMeta: metav1.ObjectMeta{Name: "fast"}, Spec: barelbv1beta1.BFDProfileSpec{ReceiveInterval: &rx, TransmitInterval: &rx}}}
			},
			peers: []bgp.Peer{with(func(p *bgp.Peer) { p.SourceAddress = netip.MustParseAddr("198.51.100.2") })},
			bfd: map[string]bfd.Peer{"router": {Local: netip.MustParseAddr("198.51.100.2"), Remote: router,
				Profile: bfd.Profile{ReceiveInterval: 100 * time.Millisecond, TransmitInterval: 100 * time.Millisecond, DetectMultiplier: 3}}}},
		{name: "bfdProfile on an ebgpMultiHop peer: a multihop session with the profile's minimum TTL",
			change: func(w *world) {
				w.Peers[0].Spec.BFDProfile, w.Peers[0].Spec.EBGPMultiHop = "hops", true
				ttl := uint32(250)
				w.Profiles = []*barelbv1beta1.BFDProfile{{ObjectMeta: metav1.ObjectMeta{Name: "hops"}, Spec: barelbv1beta1.BFDProfileSpec{MinimumTTL: &ttl}}}
			},
			peers: []bgp.Peer{with(func(p *bgp.Peer) { p.EBGPMultiHopTTL = 255 })},
			bfd: map[string]bfd.Peer{"router": {Remote: router, Multihop: true,
				Profile: bfd.Profile{ReceiveInterval: 300 * time.Millisecond, TransmitInterval: 300 * time.Millisecond, DetectMultiplier: 3, MinimumTTL: 250}}}},
		{name: "bfdProfile with echo: the session runs without BFD, and says so",
			change: func(w *world) {
				w.Peers[0].Spec.BFDProfile = "echo"
				on := true
				w.Profiles = []*barelbv1beta1.BFDProfile{{ObjectMeta: metav1.ObjectMeta{Name: "echo"}, Spec: barelbv1beta1.BFDProfileSpec{EchoMode: &on}}}
			},
			peers:   []bgp.Peer{base},
			problem: "echo mode is not supported; the session runs without BFD"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := testWorld(t)
			if tc.change != nil {
				tc.change(&w)
			}
			d := decide(w)
			if diff := cmp.Diff(tc.peers, d.Peers, cmpOpts); diff != "" {
				t.Errorf("peers (-want +got):\n%s", diff)
			}
			if tc.passwords == nil {
				tc.passwords = map[string]string{}
			}
			if diff := cmp.Diff(tc.passwords, d.Passwords); diff != "" {
				t.Errorf("passwords (-want +got):\n%s", diff)
			}
			got := d.PeerProblems["router"]
			if (tc.problem == "") != (got == "") || !strings.Contains(got, tc.problem) {
				t.Errorf("problem %q, want one containing %q", got, tc.problem)
			}
			if tc.bfd == nil {
				tc.bfd = map[string]bfd.Peer{}
			}
			if diff := cmp.Diff(tc.bfd, d.BFD, cmpOpts); diff != "" {
				t.Errorf("BFD (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecideRoutes(t *testing.T) {
	p7, p7v6 := netip.MustParsePrefix("203.0.113.7/32"), netip.MustParsePrefix("2001:db8:5::7/128")
	tests := []struct {
		name        string
		change      func(*world)
		routes      map[string][]bgp.Route
		statuses    map[string][]string
		advProblem  string // in AdvProblems, any advertisement
		peerProblem string // in PeerProblems["router"]
	}{
		{name: "every address to every peer",
			routes:   map[string][]bgp.Route{"router": {{Prefix: p7}, {Prefix: p7v6}}},
			statuses: map[string][]string{"default/web": {"router"}}},
		{name: "aggregation, communities by name and value",
			change: func(w *world) {
				agg := int32(24)
				w.Advs[0].Spec.AggregationLength = &agg
				w.Advs[0].Spec.Communities = []barelbv1beta1.CommunityRef{"64500:1", "no-export-ish"}
				w.Communities = []barelbv1beta1.Community{{Spec: barelbv1beta1.CommunitySpec{Communities: []barelbv1beta1.CommunityAlias{{Name: "no-export-ish", Value: "large:64500:1:2"}}}}}
			},
			routes: map[string][]bgp.Route{"router": {
				{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Communities: []bgp.Community{bgp.Community{Global: 64500, Local1: 1}, bgp.Community{Large: true, Global: 64500, Local1: 1, Local2: 2}}},
				{Prefix: p7v6, Communities: []bgp.Community{bgp.Community{Global: 64500, Local1: 1}, bgp.Community{Large: true, Global: 64500, Local1: 1, Local2: 2}}}}},
			statuses: map[string][]string{"default/web": {"router"}}},
		{name: "an unknown community name refuses the advertisement, not the others",
			change: func(w *world) {
				w.Advs = append(w.Advs, testAdv("bad", func(s *barelbv1beta1.BGPAdvertisementSpec) { s.Communities = []barelbv1beta1.CommunityRef{"nope"} }))
			},
			routes:     map[string][]bgp.Route{"router": {{Prefix: p7}, {Prefix: p7v6}}},
			statuses:   map[string][]string{"default/web": {"router"}},
			advProblem: `unknown community name "nope"`},
		{name: "aggregation wider than the pool is refused",
			change: func(w *world) {
				agg := int32(16)
				w.Advs[0].Spec.AggregationLength = &agg
			},
			routes:     map[string][]bgp.Route{"router": {}},
			statuses:   map[string][]string{},
			advProblem: "aggregationLength 16 is shorter than 203.0.113.0/24"},
		{name: "conflicting localPref for an iBGP peer is a problem of that peer",
			change: func(w *world) {
				w.Peers[0].Spec.PeerASN = 64500
				w.Advs = []*barelbv1beta1.BGPAdvertisement{
					testAdv("a", func(s *barelbv1beta1.BGPAdvertisementSpec) { s.LocalPref = 100 }),
					testAdv("b", func(s *barelbv1beta1.BGPAdvertisementSpec) { s.LocalPref = 200 }),
				}
			},
			routes:      map[string][]bgp.Route{"router": {}},
			statuses:    map[string][]string{},
			peerProblem: "conflicting localPref"},
		{name: "an excluded node keeps its sessions, advertises nothing",
			change:   func(w *world) { w.Node.Labels[bgpplan.ExcludeLabel] = "" },
			routes:   map[string][]bgp.Route{"router": {}},
			statuses: map[string][]string{}},
		{name: "Local traffic without an endpoint here",
			change: func(w *world) {
				w.Services[0].LocalTraffic = true
				w.Services[0].EndpointNodes = map[string]bool{"n2": true}
			},
			routes:   map[string][]bgp.Route{"router": {}},
			statuses: map[string][]string{}},
		{name: "a status patched to the node's address is not advertised",
			change: func(w *world) {
				// A second writer of the status (a user, k3s servicelb)
				// put the node's own address there.
				w.Services[0].Addresses = []netip.Addr{netip.MustParseAddr("198.51.100.1")}
			},
			routes:   map[string][]bgp.Route{"router": {}},
			statuses: map[string][]string{}},
		{name: "of a forged and a real address, only the real one is advertised",
			change: func(w *world) {
				w.Services[0].Addresses = []netip.Addr{netip.MustParseAddr("198.51.100.100"), netip.MustParseAddr("203.0.113.7")}
			},
			routes:   map[string][]bgp.Route{"router": {{Prefix: p7}}},
			statuses: map[string][]string{"default/web": {"router"}}},
		{name: "a pool annotation naming no pool advertises nothing",
			change: func(w *world) {
				w.Services[0].Pool = "forged"
			},
			routes:   map[string][]bgp.Route{"router": {}},
			statuses: map[string][]string{}},
		{name: "advertisement naming one of two peers",
			change: func(w *world) {
				w.Peers = append(w.Peers, testPeer("other", func(s *barelbv1beta1.BGPPeerSpec) { s.PeerAddress = "198.51.100.101" }))
				w.Advs[0].Spec.Peers = []string{"other"}
			},
			routes:   map[string][]bgp.Route{"other": {{Prefix: p7}, {Prefix: p7v6}}, "router": {}},
			statuses: map[string][]string{"default/web": {"other"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := testWorld(t)
			if tc.change != nil {
				tc.change(&w)
			}
			d := decide(w)
			if diff := cmp.Diff(tc.routes, d.Routes, cmpOpts); diff != "" {
				t.Errorf("routes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.statuses, d.Statuses); diff != "" {
				t.Errorf("statuses (-want +got):\n%s", diff)
			}
			var advProblems []string
			for _, p := range d.AdvProblems {
				advProblems = append(advProblems, p)
			}
			all := strings.Join(advProblems, "\n")
			if (tc.advProblem == "") != (all == "") || !strings.Contains(all, tc.advProblem) {
				t.Errorf("advertisement problems %q, want one containing %q", all, tc.advProblem)
			}
			got := d.PeerProblems["router"]
			if (tc.peerProblem == "") != (got == "") || !strings.Contains(got, tc.peerProblem) {
				t.Errorf("peer problem %q, want one containing %q", got, tc.peerProblem)
			}
		})
	}
}

func TestNodeOf(t *testing.T) {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"a": "b"}}}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionTrue}}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeExternalIP, Address: "192.0.2.9"},
		{Type: corev1.NodeInternalIP, Address: "2001:db8::1"}, {Type: corev1.NodeInternalIP, Address: "198.51.100.1"}}
	got, ips := nodeOf(n)
	if got.Name != "n1" || got.Labels["a"] != "b" || !got.NetworkUnavailable || !got.Excluded() {
		t.Errorf("node %+v", got)
	}
	if diff := cmp.Diff([]netip.Addr{netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("198.51.100.1")}, ips, cmpOpts); diff != "" {
		t.Errorf("InternalIPs (-want +got):\n%s", diff)
	}
}

func TestRouterIDFrom(t *testing.T) {
	for in, want := range map[string]string{"198.51.100.1": "198.51.100.1", "::ffff:198.51.100.2": "198.51.100.2", "2001:db8::c633:6403": "198.51.100.3"} {
		if got := routerIDFrom(netip.MustParseAddr(in)); got.String() != want {
			t.Errorf("routerIDFrom(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestRouteChanges(t *testing.T) {
	a, b, c := netip.MustParsePrefix("203.0.113.1/32"), netip.MustParsePrefix("203.0.113.2/32"), netip.MustParsePrefix("203.0.113.3/32")
	tests := []struct {
		name     string
		old, new []bgp.Route
		want     int
	}{
		{"nothing", nil, nil, 0},
		{"added", nil, []bgp.Route{{Prefix: a}, {Prefix: b}}, 2},
		{"same", []bgp.Route{{Prefix: a}}, []bgp.Route{{Prefix: a}}, 0},
		{"changed attribute", []bgp.Route{{Prefix: a}}, []bgp.Route{{Prefix: a, LocalPref: 200}}, 1},
		{"withdrawn and added", []bgp.Route{{Prefix: a}, {Prefix: b}}, []bgp.Route{{Prefix: b}, {Prefix: c}}, 2},
	}
	for _, tc := range tests {
		if got := routeChanges(tc.old, tc.new); got != tc.want {
			t.Errorf("%s: %d changes, want %d", tc.name, got, tc.want)
		}
	}
}

// TestDecideGracefulShutdown: a cordoned node (kubectl drain's first step)
// keeps its sessions and routes and sends them with GRACEFUL_SHUTDOWN.
func TestDecideGracefulShutdown(t *testing.T) {
	w := testWorld(t)
	plain := decide(w)
	w.Cordoned = true
	cordoned := decide(w)
	if plain.GracefulShutdown || !cordoned.GracefulShutdown {
		t.Errorf("GracefulShutdown %v uncordoned, %v cordoned; want false, true", plain.GracefulShutdown, cordoned.GracefulShutdown)
	}
	if diff := cmp.Diff(plain.Peers, cordoned.Peers, cmpOpts); diff != "" {
		t.Errorf("cordoning changed the sessions (-uncordoned +cordoned):\n%s", diff)
	}
	if diff := cmp.Diff(plain.Routes, cordoned.Routes, cmpOpts); diff != "" {
		t.Errorf("cordoning changed the routes (-uncordoned +cordoned):\n%s", diff)
	}
}

// TestDecideHoldOverRestart: a speaker restarting in place may leave its
// routes as they are only when every session sent routes has graceful
// restart (the routers keep them) and the node is Ready and not cordoned
// (it is not going down).
func TestDecideHoldOverRestart(t *testing.T) {
	gr := func(s *barelbv1beta1.BGPPeerSpec) { s.EnableGracefulRestart = true }
	noRoutes := func(s *barelbv1beta1.BGPPeerSpec) {
		s.PeerAddress = "198.51.100.101"
		s.NodeSelectors = []barelbv1beta1.Selector{{MatchLabels: map[string]barelbv1beta1.LabelValue{"rack": "b"}}}
	}
	for _, tc := range []struct {
		name     string
		peers    []*barelbv1beta1.BGPPeer
		notReady bool
		cordoned bool
		want     bool
	}{
		{"graceful restart on the only session", []*barelbv1beta1.BGPPeer{testPeer("router", gr)}, false, false, true},
		{"a session without graceful restart", []*barelbv1beta1.BGPPeer{testPeer("router", nil)}, false, false, false},
		{"one of two sessions without graceful restart", []*barelbv1beta1.BGPPeer{testPeer("a", gr), testPeer("b", func(s *barelbv1beta1.BGPPeerSpec) { s.PeerAddress = "198.51.100.101" })}, false, false, false},
		{"a peer that does not select this node does not count", []*barelbv1beta1.BGPPeer{testPeer("a", gr), testPeer("b", noRoutes)}, false, false, true},
		{"the node is not Ready (shutting down)", []*barelbv1beta1.BGPPeer{testPeer("router", gr)}, true, false, false},
		{"the node is cordoned", []*barelbv1beta1.BGPPeer{testPeer("router", gr)}, false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := testWorld(t)
			w.Peers, w.NodeReady, w.Cordoned = tc.peers, !tc.notReady, tc.cordoned
			d := decide(w)
			if len(d.PeerProblems) > 0 {
				t.Fatalf("peer problems: %v", d.PeerProblems)
			}
			if d.HoldOverRestart != tc.want {
				t.Errorf("HoldOverRestart = %v, want %v (sessions %d)", d.HoldOverRestart, tc.want, len(d.Peers))
			}
		})
	}
}

// TestDecideStatusesShared: each Service's status names the peers its
// routes go to, sorted, and Services with the same peers share one list
// (at 10,000 Services a list each was a large part of every plan).
func TestDecideStatusesShared(t *testing.T) {
	w := testWorld(t)
	w.Peers = []*barelbv1beta1.BGPPeer{
		testPeer("c", func(s *barelbv1beta1.BGPPeerSpec) { s.PeerAddress = "198.51.100.103" }),
		testPeer("a", func(s *barelbv1beta1.BGPPeerSpec) { s.PeerAddress = "198.51.100.101" }),
		testPeer("b", func(s *barelbv1beta1.BGPPeerSpec) { s.PeerAddress = "198.51.100.102" }),
	}
	// Services labelled "few" go to a and c only; the others to all.
	w.Advs = []*barelbv1beta1.BGPAdvertisement{
		testAdv("all", func(s *barelbv1beta1.BGPAdvertisementSpec) {
			s.ServiceSelectors = []barelbv1beta1.Selector{{MatchLabels: map[string]barelbv1beta1.LabelValue{"spread": "all"}}}
		}),
		testAdv("few", func(s *barelbv1beta1.BGPAdvertisementSpec) {
			s.Peers = []string{"c", "a"}
			s.ServiceSelectors = []barelbv1beta1.Selector{{MatchLabels: map[string]barelbv1beta1.LabelValue{"spread": "few"}}}
		}),
	}
	w.Services = nil
	for i, spread := range []string{"all", "few", "all", "few", "all"} {
		w.Services = append(w.Services, bgpplan.Service{Key: "default/s" + string(rune('0'+i)), Pool: "vips", Labels: labels.Set{"spread": spread},
			Addresses: []netip.Addr{netip.AddrFrom4([4]byte{203, 0, 113, byte(10 + i)})}})
	}
	d := decide(w)
	want := map[string][]string{
		"default/s0": {"a", "b", "c"}, "default/s1": {"a", "c"}, "default/s2": {"a", "b", "c"},
		"default/s3": {"a", "c"}, "default/s4": {"a", "b", "c"},
	}
	if diff := cmp.Diff(want, d.Statuses); diff != "" {
		t.Fatalf("statuses (-want +got):\n%s", diff)
	}
	if &d.Statuses["default/s0"][0] != &d.Statuses["default/s4"][0] || &d.Statuses["default/s1"][0] != &d.Statuses["default/s3"][0] {
		t.Errorf("Services with the same peers have lists of their own")
	}
}

// TestSlimBGPStatus: the cache keeps what the status writer compares and
// writes with, nothing else.
func TestSlimBGPStatus(t *testing.T) {
	in := &barelbv1beta1.ServiceBGPStatus{
		ObjectMeta: metav1.ObjectMeta{Name: "n1-default-web-1234", Namespace: namespace, UID: "u1", ResourceVersion: "42",
			Labels:        map[string]string{LabelNode: "n1", barelbv1beta1.LabelServiceName: "web"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "speaker"}}, Annotations: map[string]string{"a": "b"}},
		Status: barelbv1beta1.ServiceBGPStatusStatus{Node: "n1", ServiceNamespace: "default", ServiceName: "web", Peers: []string{"router"}},
	}
	got, err := slimBGPStatus(in)
	if err != nil {
		t.Fatal(err)
	}
	want := &barelbv1beta1.ServiceBGPStatus{
		ObjectMeta: metav1.ObjectMeta{Name: "n1-default-web-1234", Namespace: namespace, UID: "u1", ResourceVersion: "42"},
		Status:     in.Status,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("slimBGPStatus (-want +got):\n%s", diff)
	}
	if other, _ := slimBGPStatus("not a status"); other != "not a status" {
		t.Errorf("other objects are changed: %v", other)
	}
}
