package bgp_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/e2etest/lab"
)

func TestMain(m *testing.M) {
	lab.RunHelperMode()
	os.Exit(m.Run())
}

// The suite's configuration; the address plan is e2etest/lab's.
const (
	peerName = "router"
	// routedV4 and routedV6 are the pool "routed", advertised one
	// address at a time; aggV4 and aggV6 the pool "agg", advertised as
	// these aggregates.
	routedV4 = "203.0.113.128/26"
	routedV6 = "2001:db8:400::/120"
	aggV4    = "203.0.113.192/26"
	aggV6    = "2001:db8:500::/120"
	// The communities of the advertisement "routed": one written out, one
	// named in the Community object.
	standardCommunity = "65000:100"
	largeCommunity    = "65000:1:2"
	// holdTime is the sessions' hold time: without BFD a dead node's
	// routes stay this long at most (at least holdTime-keepalive).
	holdTime  = 9 * time.Second
	keepalive = 3 * time.Second
	// maxWithBFD is a generous bound on a withdrawal with BFD at 100 ms × 3
	// (measured about 0.3 s): it only tells BFD from the hold time.
	maxWithBFD = 4 * time.Second
	// minWithoutBFD is the least a withdrawal without BFD can take when
	// the node is cut off silently: the hold time minus one keepalive
	// interval.
	minWithoutBFD = holdTime - keepalive - time.Second
)

// suiteObjects are the pools, peer and advertisement every step shares.
func suiteObjects() []client.Object {
	peer := &barelbv1beta1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: peerName, Namespace: lab.BarelbNamespace},
		Spec: barelbv1beta1.BGPPeerSpec{
			MyASN: lab.NodeASN, PeerASN: lab.RouterASN, PeerAddress: "203.0.113.1",
			HoldTime: duration(holdTime), KeepaliveTime: duration(keepalive), ConnectTime: duration(2 * time.Second),
		}}
	community := &barelbv1beta1.Community{ObjectMeta: metav1.ObjectMeta{Name: "communities", Namespace: lab.BarelbNamespace},
		Spec: barelbv1beta1.CommunitySpec{Communities: []barelbv1beta1.CommunityAlias{
			{Name: "site-a", Value: barelbv1beta1.CommunityValue("large:" + largeCommunity)}}}}
	adv := &barelbv1beta1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "routed", Namespace: lab.BarelbNamespace},
		Spec: barelbv1beta1.BGPAdvertisementSpec{
			IPAddressPools: []string{"routed"},
			Communities:    []barelbv1beta1.CommunityRef{standardCommunity, "site-a"},
			Peers:          []string{peerName},
		}}
	fast := &barelbv1beta1.BFDProfile{ObjectMeta: metav1.ObjectMeta{Name: "fast", Namespace: lab.BarelbNamespace},
		Spec: barelbv1beta1.BFDProfileSpec{ReceiveInterval: ptr[uint32](100), TransmitInterval: ptr[uint32](100), DetectMultiplier: ptr[uint32](3)}}
	return []client.Object{pool("routed", routedV4, routedV6), pool("agg", aggV4, aggV6), community, fast, peer, adv}
}

func startLab(tb testing.TB, nodes int) *lab.Lab {
	tb.Helper()
	needsLab(tb)
	return lab.Start(tb, lab.Options{Nodes: nodes, Barelb: true})
}

func TestBGP(t *testing.T) {
	l := startLab(t, 3)
	create(t, l, suiteObjects()...)
	waitSessions(t, l, allNodes(l), 60*time.Second)
	// The Service of the first steps (see ecmp); testWithdrawOnDelete
	// deletes it.
	for _, n := range allNodes(l) {
		l.RunPod(t, "ecmp-"+n, "ecmp", n)
	}
	lbService(t, l, "ecmp", "ecmp", "routed", corev1.ServiceExternalTrafficPolicyLocal)
	steps := []struct {
		name string
		f    func(*testing.T, *lab.Lab)
	}{
		{"every node advertises, the router installs the ECMP route and reaches the backends", testECMP},
		{"an IPv6 address over the IPv4 sessions", testIPv6OverIPv4},
		{"localPref and communities over an iBGP session", testLocalPref},
		{"deleting the Service withdraws its routes", testWithdrawOnDelete},
		{"a Local Service's route follows its only endpoint", testLocalMove},
		{"aggregation", testAggregation},
		{"a bad BGPPeer is reported and the others keep working", testInvalidPeer},
		{"TCP MD5: a wrong password keeps the session down and says why", testMD5},
		{"a dead node: hold time without BFD, BFD with it", testDeadNode},
		{"a link flap with BFD: withdrawn, reported, back by itself", testLinkFlap},
	}
	for _, s := range steps {
		if !t.Run(s.name, func(t *testing.T) { s.f(t, l) }) {
			t.Logf("logs of the lab's processes: %s/logs", l.StateDir())
		}
	}
}

// ecmp is the Service of the first steps: Local, with a pod on every
// node, so that an answer names the node the router sent the flow to.
var ecmp struct{ v4, v6 netip.Addr }

func testECMP(t *testing.T, l *lab.Lab) {
	since := time.Now()
	ecmp.v4, ecmp.v6 = waitIngress(t, l, "ecmp")
	l.WaitEndpoints(t, "ecmp", 3)
	start := time.Now()
	paths := waitPaths(t, l, host(ecmp.v4), allNodes(l), 60*time.Second)
	t.Logf("the router learnt %s from every node %v after the endpoints were ready", ecmp.v4, time.Since(start).Round(time.Millisecond))
	for _, p := range paths {
		t.Logf("router: %s: %s", host(ecmp.v4), p)
		if p.Type != "external" {
			t.Errorf("path %s: want an eBGP path", p)
		}
		if !slices.Contains(strings.Fields(p.Communities), standardCommunity) || !slices.Contains(strings.Fields(p.LargeCommunities), largeCommunity) {
			t.Errorf("path %s: want community %s and large community %s", p, standardCommunity, largeCommunity)
		}
		if !p.Best && !p.Multipath {
			t.Errorf("path %s is neither best nor multipath: the router does not use it for ECMP", p)
		}
	}
	waitKernelNodes(t, l, host(ecmp.v4), allNodes(l), 30*time.Second)
	gws, _ := kernelNextHops(l, host(ecmp.v4))
	t.Logf("router kernel: %s via %v", ecmp.v4, gws)
	waitStatuses(t, l, "ecmp", allNodes(l), peerName)
	// The Service says so: the peer, and the nodes whose sessions to it
	// are established (their speakers' Leases say which).
	t.Logf("condition barelb.io/Announced: %s", waitAnnounced(t, l, "ecmp", metav1.ConditionTrue, barelbv1beta1.AnnouncedReasonBGP,
		"advertised to "+peerName+" by node "+strings.Join(allNodes(l), ", ")))

	// Flows from the router and from the host behind it reach the pods,
	// spread over the nodes by the router's multipath hash.
	for _, from := range []string{"router", "ext"} {
		url := lab.URL(ecmp.v4.String())
		waitReached(t, l, from, url)
		seen := routerGet(l, from, url, 40)
		t.Logf("%s → %s: %v", from, url, seen)
		pods := 0
		for answer := range seen {
			if strings.HasPrefix(answer, "ecmp-") {
				pods++
			} else if !strings.HasPrefix(answer, "error: ") {
				t.Errorf("%s → %s: unexpected answer %q", from, url, answer)
			}
		}
		if pods < 2 {
			t.Errorf("%s → %s: 40 connections reached %d node(s) (%v), want the router's ECMP route to spread them", from, url, pods, seen)
		}
	}

	for _, n := range allNodes(l) {
		waitMetric(t, l, n, "barelb_speaker_bgp_session_up", peerName, func(v float64) bool { return v == 1 }, "1")
		// Both addresses of the Service (IPv6 over the IPv4 session).
		p := waitMetric(t, l, n, "barelb_speaker_bgp_prefixes_advertised", peerName, func(v float64) bool { return v >= 2 }, "at least 2")
		u := waitMetric(t, l, n, "barelb_speaker_bgp_updates_sent_total", peerName, func(v float64) bool { return v >= 1 }, "at least 1")
		t.Logf("%s: session up, %v prefixes advertised, %v updates sent", n, p, u)
	}
	msg := waitEvent(t, l, peerName, corev1.EventTypeNormal, "BGPSessionEstablished", since.Add(-time.Hour), nil)
	t.Logf("Event BGPSessionEstablished: %s", msg)
}

// needsECMP skips a step whose Service the first step did not get.
func needsECMP(t *testing.T) {
	if !ecmp.v4.IsValid() {
		t.Skip("needs the Service of the first step")
	}
}

func testIPv6OverIPv4(t *testing.T, l *lab.Lab) {
	needsECMP(t)
	paths := waitPaths(t, l, host(ecmp.v6), allNodes(l), 60*time.Second)
	for _, p := range paths {
		t.Logf("router: %s: %s", host(ecmp.v6), p)
		if a, err := netip.ParseAddr(p.Peer); err != nil || !a.Is4() {
			t.Errorf("path %s: want it learnt over an IPv4 session", p)
		}
		for _, nh := range p.NextHops {
			if a, err := netip.ParseAddr(nh); err != nil || !a.Is6() {
				t.Errorf("path %s: want an IPv6 next hop", p)
			}
		}
	}
	waitKernelNodes(t, l, host(ecmp.v6), allNodes(l), 30*time.Second)
	url := lab.URL(ecmp.v6.String())
	answer := waitReached(t, l, "ext", url)
	t.Logf("ext → %s: %s", url, answer)
}

// testLocalPref opens an iBGP session from node1 to the router's IPv6
// address (the router puts that listen range in a peer group of its own
// AS) with a second advertisement of the pool that sets localPref 150 and
// another community for that peer only. FRR shows the local preference of
// iBGP paths (eBGP peers never receive one), and prefers the path: the
// IPv6 route then goes to node1 alone.
func testLocalPref(t *testing.T, l *lab.Lab) {
	needsECMP(t)
	rasn := fmt.Sprint(lab.RouterASN)
	configureRouter(t, l, []string{
		"router bgp " + rasn,
		"no bgp listen range " + lab.RouterSegv6 + " peer-group " + lab.RouterPeerGroup,
		"neighbor IBGP peer-group",
		"neighbor IBGP remote-as internal",
		"bgp listen range " + lab.RouterSegv6 + " peer-group IBGP",
		"address-family ipv6 unicast",
		"neighbor IBGP activate",
	}, []string{
		"router bgp " + rasn,
		"no bgp listen range " + lab.RouterSegv6 + " peer-group IBGP",
		"no neighbor IBGP peer-group",
		"bgp listen range " + lab.RouterSegv6 + " peer-group " + lab.RouterPeerGroup,
	})
	ibgp := &barelbv1beta1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "router-ibgp", Namespace: lab.BarelbNamespace},
		Spec: barelbv1beta1.BGPPeerSpec{
			MyASN: lab.RouterASN, PeerASN: lab.RouterASN, PeerAddress: "2001:db8:200::1", DisableMP: true,
			NodeSelectors: onNode("node1"), HoldTime: duration(holdTime), ConnectTime: duration(2 * time.Second),
		}}
	adv := &barelbv1beta1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "ibgp", Namespace: lab.BarelbNamespace},
		Spec: barelbv1beta1.BGPAdvertisementSpec{
			IPAddressPools: []string{"routed"}, LocalPref: 150,
			Communities: []barelbv1beta1.CommunityRef{"65000:200"}, Peers: []string{"router-ibgp"},
		}}
	create(t, l, ibgp, adv)
	node1 := nodeAddr(t, l, "node1", 6).String()
	var ibgpPath bgpPath
	lab.Eventually(t, 60*time.Second, "an iBGP path to "+ecmp.v6.String()+" from node1", func() (bool, string) {
		paths, err := routerPaths(l, host(ecmp.v6))
		if err != nil {
			return false, err.Error()
		}
		for _, p := range paths {
			if p.Peer == node1 {
				ibgpPath = p
				return true, ""
			}
		}
		return false, fmt.Sprint(paths)
	})
	t.Logf("router: %s: %s", host(ecmp.v6), ibgpPath)
	if ibgpPath.Type != "internal" || ibgpPath.LocalPref == nil || *ibgpPath.LocalPref != 150 {
		t.Errorf("iBGP path %s: want an internal path with localPref 150", ibgpPath)
	}
	if ibgpPath.Communities != "65000:200" || ibgpPath.LargeCommunities != "" {
		t.Errorf("iBGP path %s: want only community 65000:200 (the other advertisement names another peer)", ibgpPath)
	}
	paths, err := routerPaths(l, host(ecmp.v6))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if p.Type == "external" && p.LocalPref != nil && *p.LocalPref == 150 {
			t.Errorf("eBGP path %s carries localPref 150", p)
		}
	}
	// No IPv4 route over the IPv6 session (disableMP), and the preferred
	// path wins: the router's IPv6 route goes to node1 alone.
	if ps, err := routerPaths(l, host(ecmp.v4)); err != nil {
		t.Fatal(err)
	} else {
		for _, p := range ps {
			if p.Type == "internal" {
				t.Errorf("IPv4 path %s over the IPv6 session with disableMP", p)
			}
		}
	}
	waitKernelNodes(t, l, host(ecmp.v6), []string{"node1"}, 30*time.Second)
	lab.Eventually(t, 60*time.Second, "node1's ServiceBGPStatus of ecmp naming both peers", func() (bool, string) {
		s, err := bgpStatuses(l, "ecmp")
		if err != nil {
			return false, err.Error()
		}
		peers := s["node1"]
		slices.Sort(peers)
		return slices.Equal(peers, []string{peerName, "router-ibgp"}), fmt.Sprint(s)
	})
}

func testWithdrawOnDelete(t *testing.T, l *lab.Lab) {
	needsECMP(t)
	waitKernelNodes(t, l, host(ecmp.v4), allNodes(l), 60*time.Second)
	waitKernelNodes(t, l, host(ecmp.v6), allNodes(l), 60*time.Second)
	start := time.Now()
	deleteService(t, l, "ecmp")
	for _, ip := range []netip.Addr{ecmp.v4, ecmp.v6} {
		waitPaths(t, l, host(ip), nil, 30*time.Second)
		waitKernelNodes(t, l, host(ip), nil, 30*time.Second)
		t.Logf("%s withdrawn from the router %v after the Service's deletion", ip, time.Since(start).Round(time.Millisecond))
	}
	waitStatuses(t, l, "ecmp", nil)
}

func testLocalMove(t *testing.T, l *lab.Lab) {
	l.RunPod(t, "local-0", "local", "node2")
	lbService(t, l, "local", "local", "routed", corev1.ServiceExternalTrafficPolicyLocal)
	v4, v6 := waitIngress(t, l, "local")
	l.WaitEndpoints(t, "local", 1)
	for _, move := range []struct{ pod, node string }{{"local-0", "node2"}, {"local-1", "node3"}} {
		start := time.Now()
		if move.pod != "local-0" {
			l.DeletePod(t, "local-0")
			l.RunPod(t, move.pod, "local", move.node)
			l.WaitEndpoints(t, "local", 1)
		}
		for _, ip := range []netip.Addr{v4, v6} {
			paths := waitPaths(t, l, host(ip), []string{move.node}, 60*time.Second)
			waitKernelNodes(t, l, host(ip), []string{move.node}, 30*time.Second)
			t.Logf("pod %s on %s: the router routes %s via %v (%v)", move.pod, move.node, ip, paths, time.Since(start).Round(time.Millisecond))
			url := lab.URL(ip.String())
			waitReached(t, l, "ext", url)
			if seen := routerGet(l, "ext", url, 5); seen[move.pod] != 5 {
				t.Errorf("ext → %s: want 5 answers from %s, got %v", url, move.pod, seen)
			}
		}
		waitStatuses(t, l, "local", []string{move.node}, peerName)
		// Nobody else starts advertising it.
		time.Sleep(time.Second)
		if paths, err := routerPaths(l, host(v4)); err != nil || len(paths) != 1 {
			t.Errorf("%s: want one path, from %s: %v %v", v4, move.node, paths, err)
		}
	}
}

func testAggregation(t *testing.T, l *lab.Lab) {
	adv := &barelbv1beta1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "agg", Namespace: lab.BarelbNamespace},
		Spec: barelbv1beta1.BGPAdvertisementSpec{
			IPAddressPools: []string{"agg"}, AggregationLength: ptr[int32](26), AggregationLengthV6: ptr[int32](120),
			Peers: []string{peerName},
		}}
	create(t, l, adv)
	l.RunPod(t, "agg-0", "agg", "node1")
	lbService(t, l, "agg-a", "agg", "agg", corev1.ServiceExternalTrafficPolicyCluster)
	lbService(t, l, "agg-b", "agg", "agg", corev1.ServiceExternalTrafficPolicyCluster)
	a4, a6 := waitIngress(t, l, "agg-a")
	b4, b6 := waitIngress(t, l, "agg-b")
	l.WaitEndpoints(t, "agg-a", 1)
	aggregates := []netip.Prefix{netip.MustParsePrefix(aggV4), netip.MustParsePrefix(aggV6)}
	for _, p := range aggregates {
		paths := waitPaths(t, l, p, allNodes(l), 60*time.Second)
		waitKernelNodes(t, l, p, allNodes(l), 30*time.Second)
		t.Logf("router: %s from %d nodes: %v", p, len(paths), paths)
	}
	for _, ip := range []netip.Addr{a4, a6, b4, b6} {
		if paths, err := routerPaths(l, host(ip)); err != nil || len(paths) != 0 {
			t.Errorf("the router has %s itself (%v, %v): want only the aggregate", host(ip), paths, err)
		}
	}
	for _, ip := range []netip.Addr{a4, a6} {
		url := lab.URL(ip.String())
		t.Logf("ext → %s (through the aggregate): %s", url, waitReached(t, l, "ext", url))
	}
	// The aggregate stays while one Service of the pool has an address.
	deleteService(t, l, "agg-a")
	waitStatuses(t, l, "agg-a", nil)
	for _, p := range aggregates {
		if paths, err := routerPaths(l, p); err != nil || len(paths) != 3 {
			t.Errorf("%s after agg-a's deletion: want it still from every node, got %v %v", p, paths, err)
		}
	}
	deleteService(t, l, "agg-b")
	for _, p := range aggregates {
		waitPaths(t, l, p, nil, 30*time.Second)
	}
}

func testInvalidPeer(t *testing.T, l *lab.Lab) {
	since := time.Now()
	// A peer whose Secret does not exist, on node1: reported, never
	// opened, and the other sessions stay.
	bad := &barelbv1beta1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "broken", Namespace: lab.BarelbNamespace},
		Spec: barelbv1beta1.BGPPeerSpec{
			MyASN: lab.NodeASN, PeerASN: lab.RouterASN, PeerAddress: "203.0.113.66", EBGPMultiHop: true,
			PasswordSecret: &barelbv1beta1.SecretRef{Name: "no-such-secret"}, NodeSelectors: onNode("node1"),
		}}
	create(t, l, bad)
	msg := waitEvent(t, l, "broken", corev1.EventTypeWarning, "BGPPeerInvalid", since, nil)
	t.Logf("Event BGPPeerInvalid: %s", msg)
	if !strings.Contains(msg, "no-such-secret") {
		t.Errorf("BGPPeerInvalid %q does not name the missing Secret", msg)
	}
	lbService(t, l, "still", "still", "routed", corev1.ServiceExternalTrafficPolicyCluster)
	v4, _ := waitIngress(t, l, "still")
	waitPaths(t, l, host(v4), allNodes(l), 60*time.Second)
	waitSessions(t, l, allNodes(l), 10*time.Second)
}

const md5Password = "s3cret"

func testMD5(t *testing.T, l *lab.Lab) {
	rasn := fmt.Sprint(lab.RouterASN)
	peer := &barelbv1beta1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: peerName, Namespace: lab.BarelbNamespace}}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "router-md5", Namespace: lab.BarelbNamespace},
		Type: corev1.SecretTypeBasicAuth, StringData: map[string]string{"password": "wrong"}}
	create(t, l, secret)
	// Only a restart takes the password off the router (see
	// lab.RestartRouter); the end of this step does it, this is for a
	// failure half-way.
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			if err := l.RestartRouter(context.Background()); err != nil {
				t.Error(err)
			}
		}
	})
	configureRouter(t, l, []string{"router bgp " + rasn, "neighbor " + lab.RouterPeerGroup + " password " + md5Password}, nil)
	since := time.Now()
	update(t, l, peer, func(p *barelbv1beta1.BGPPeer) {
		p.Spec.PasswordSecret = &barelbv1beta1.SecretRef{Name: "router-md5"}
	})
	t.Cleanup(func() {
		update(t, l, peer, func(p *barelbv1beta1.BGPPeer) { p.Spec.PasswordSecret = nil })
	})
	lbService(t, l, "md5", "md5", "routed", corev1.ServiceExternalTrafficPolicyCluster)
	v4, _ := waitIngress(t, l, "md5")
	msg := waitEvent(t, l, peerName, corev1.EventTypeWarning, "BGPSessionNotEstablished", since, func(m string) bool {
		return strings.Contains(strings.ToUpper(m), "MD5")
	})
	t.Logf("Event BGPSessionNotEstablished: %s", msg)
	waitSessions(t, l, nil, 10*time.Second)
	// The Service says why it reaches no router.
	t.Logf("condition barelb.io/Announced: %s", waitAnnounced(t, l, "md5", metav1.ConditionFalse, barelbv1beta1.AnnouncedReasonNoBGPSessionUp, peerName))
	if paths, err := routerPaths(l, host(v4)); err != nil || len(paths) != 0 {
		t.Errorf("the router learnt %s with a wrong MD5 password: %v %v", v4, paths, err)
	}
	start := time.Now()
	update(t, l, secret, func(s *corev1.Secret) {
		s.StringData = map[string]string{"password": md5Password}
	})
	waitSessions(t, l, allNodes(l), 60*time.Second)
	waitPaths(t, l, host(v4), allNodes(l), 30*time.Second)
	waitAnnounced(t, l, "md5", metav1.ConditionTrue, barelbv1beta1.AnnouncedReasonBGP, "advertised to "+peerName)
	t.Logf("with the right password: sessions up and %s learnt %v after the Secret's update", v4, time.Since(start).Round(time.Millisecond))

	// Back to no password, which also shows the sessions coming back by
	// themselves after a router restart.
	update(t, l, peer, func(p *barelbv1beta1.BGPPeer) { p.Spec.PasswordSecret = nil })
	start = time.Now()
	restarted = true
	if err := l.RestartRouter(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitSessions(t, l, allNodes(l), 60*time.Second)
	waitKernelNodes(t, l, host(v4), allNodes(l), 30*time.Second)
	t.Logf("router restarted without the password: sessions and the route to %s back after %v", v4, time.Since(start).Round(time.Millisecond))
}

// haService makes the Service of the failure steps: Cluster, with its
// pods on node1 and node2, so that node3 may die without losing a
// backend. It returns its IPv4 address once every node routes it.
func haService(tb testing.TB, l *lab.Lab, name string) netip.Addr {
	tb.Helper()
	l.RunPod(tb, name+"-node1", name, "node1")
	l.RunPod(tb, name+"-node2", name, "node2")
	lbService(tb, l, name, name, "routed", corev1.ServiceExternalTrafficPolicyCluster)
	v4, _ := waitIngress(tb, l, name)
	l.WaitEndpoints(tb, name, 2)
	waitKernelNodes(tb, l, host(v4), allNodes(l), 60*time.Second)
	return v4
}

// enableBFD turns BFD on for the router's peer group (profile "fast",
// 100 ms × 3) and the BGPPeer (BFDProfile "fast"), and waits until every
// node's BFD session is up; both are undone when the test ends.
func enableBFD(tb testing.TB, l *lab.Lab) {
	tb.Helper()
	rasn := fmt.Sprint(lab.RouterASN)
	configureRouter(tb, l, []string{
		"bfd", "profile fast", "receive-interval 100", "transmit-interval 100", "detect-multiplier 3", "exit", "exit",
		"router bgp " + rasn, "neighbor " + lab.RouterPeerGroup + " bfd", "neighbor " + lab.RouterPeerGroup + " bfd profile fast",
	}, []string{
		"router bgp " + rasn, "no neighbor " + lab.RouterPeerGroup + " bfd", "exit", "bfd", "no profile fast",
	})
	peer := &barelbv1beta1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: peerName, Namespace: lab.BarelbNamespace}}
	update(tb, l, peer, func(p *barelbv1beta1.BGPPeer) { p.Spec.BFDProfile = "fast" })
	tb.Cleanup(func() {
		update(tb, l, peer, func(p *barelbv1beta1.BGPPeer) { p.Spec.BFDProfile = "" })
	})
	waitBFD(tb, l)
}

// waitBFD waits until the router has an up BFD session with every node
// and the speakers say so.
func waitBFD(tb testing.TB, l *lab.Lab) {
	tb.Helper()
	lab.Eventually(tb, 60*time.Second, "the router's BFD sessions with every node up", func() (bool, string) {
		peers, err := bfdPeers(l)
		if err != nil {
			return false, err.Error()
		}
		var up []string
		for addr, status := range peers {
			if status == "up" {
				up = append(up, addr)
			}
		}
		return slices.Equal(nodesOf(l, up), allNodes(l)), fmt.Sprint(peers)
	})
	for _, n := range allNodes(l) {
		waitMetric(tb, l, n, "barelb_speaker_bfd_session_up", peerName, func(v float64) bool { return v == 1 }, "1")
	}
	waitSessions(tb, l, allNodes(l), 60*time.Second)
}

// killNode makes node die as a machine does: its link to the router goes
// (nothing it sends reaches the router any more) and its speaker is
// SIGKILLed. revive brings it back and waits until the router routes
// prefix through it again.
func killNode(tb testing.TB, l *lab.Lab, node string) (revive func(prefix netip.Prefix)) {
	tb.Helper()
	ns, port := routerPort(tb, l, node)
	if err := setLink(ns, port, "down"); err != nil {
		tb.Fatal(err)
	}
	up := false
	restore := func() {
		if !up {
			up = true
			if err := setLink(ns, port, "up"); err != nil {
				tb.Error(err)
			}
		}
	}
	tb.Cleanup(restore)
	if err := l.Kill(node, lab.ComponentSpeaker); err != nil {
		tb.Fatal(err)
	}
	return func(prefix netip.Prefix) {
		restore()
		l.RestartSpeaker(tb, node)
		waitKernelNodes(tb, l, host(prefix.Addr()), allNodes(l), 60*time.Second)
	}
}

func testDeadNode(t *testing.T, l *lab.Lab) {
	v4 := haService(t, l, "ha")
	prefix := host(v4)

	// SIGKILL alone: node3's kernel closes the TCP session at once.
	start := time.Now()
	if err := l.Kill("node3", lab.ComponentSpeaker); err != nil {
		t.Fatal(err)
	}
	took, ok := measureWithdrawal(l, prefix, "node3", start, 30*time.Second)
	t.Logf("SIGKILL of node3's speaker (its kernel closes TCP): route via node3 gone after %v", took.Round(time.Millisecond))
	if !ok {
		t.Fatalf("the router still routes %s via node3 %v after its speaker was killed", v4, took)
	}
	l.RestartSpeaker(t, "node3")
	waitKernelNodes(t, l, prefix, allNodes(l), 60*time.Second)

	// node3 dies silently, without BFD: the hold time.
	start = time.Now()
	revive := killNode(t, l, "node3")
	took, ok = measureWithdrawal(l, prefix, "node3", start, 3*holdTime)
	t.Logf("node3 cut off and its speaker killed, without BFD (hold time %v): route via node3 gone after %v", holdTime, took.Round(time.Millisecond))
	if !ok {
		t.Fatalf("the router still routes %s via node3 %v after the node died (hold time %v)", v4, took, holdTime)
	}
	if took < minWithoutBFD {
		t.Errorf("without BFD the route went after %v, before the hold time could expire (%v): something else withdrew it", took, minWithoutBFD)
	}
	if gws, _ := kernelNextHops(l, prefix); !slices.Equal(nodesOf(l, gws), []string{"node1", "node2"}) {
		t.Errorf("after node3's death the router routes %s via %v, want node1 and node2", v4, nodesOf(l, gws))
	}
	revive(prefix)

	// The same with BFD at 100 ms × 3.
	enableBFD(t, l)
	start = time.Now()
	revive = killNode(t, l, "node3")
	took, ok = measureWithdrawal(l, prefix, "node3", start, 3*holdTime)
	t.Logf("node3 cut off and its speaker killed, with BFD 100 ms × 3: route via node3 gone after %v", took.Round(time.Millisecond))
	if !ok || took > maxWithBFD {
		t.Errorf("with BFD the route via node3 went after %v (gone: %v); want BFD's detection (about 0.3 s), not the hold time", took, ok)
	}
	revive(prefix)
	waitBFD(t, l)
}

// testLinkFlap cuts node3's link to the router without killing anything:
// BFD takes the route away on the router, node3's speaker reports the
// session down, and once the link is back the session and the route
// return by themselves.
func testLinkFlap(t *testing.T, l *lab.Lab) {
	v4 := haService(t, l, "flap")
	prefix := host(v4)
	enableBFD(t, l)
	ns, port := routerPort(t, l, "node3")
	since := time.Now()
	if err := setLink(ns, port, "down"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = setLink(ns, port, "up") })
	took, ok := measureWithdrawal(l, prefix, "node3", since, 3*holdTime)
	t.Logf("node3's link to the router down, with BFD: route via node3 gone after %v", took.Round(time.Millisecond))
	if !ok || took > maxWithBFD {
		t.Errorf("with BFD the route via node3 went after %v (gone: %v); want BFD's detection", took, ok)
	}
	msg := waitEvent(t, l, peerName, corev1.EventTypeWarning, "BGPSessionDown", since, nil)
	t.Logf("Event BGPSessionDown: %s", msg)
	waitMetric(t, l, "node3", "barelb_speaker_bgp_session_up", peerName, func(v float64) bool { return v == 0 }, "0")
	waitMetric(t, l, "node3", "barelb_speaker_bfd_session_up", peerName, func(v float64) bool { return v == 0 }, "0")
	start := time.Now()
	if err := setLink(ns, port, "up"); err != nil {
		t.Fatal(err)
	}
	waitKernelNodes(t, l, prefix, allNodes(l), 60*time.Second)
	t.Logf("link up: the router routes %s via node3 again after %v", v4, time.Since(start).Round(time.Millisecond))
	waitBFD(t, l)
}
