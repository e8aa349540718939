package bgp_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/e2etest/lab"
)

// TestBGPPeerKinds puts on the wire, against FRR, what the golden files
// of internal/bgp only show in configuration: eBGP multihop to a router
// two hops away with multihop BFD, graceful restart (the router keeps the
// routes while the speaker restarts) and dynamic ASNs. One node; each
// step creates its own BGPPeer and deletes it when done.
func TestBGPPeerKinds(t *testing.T) {
	l := startLab(t, 1)
	fast := &barelbv1beta1.BFDProfile{ObjectMeta: metav1.ObjectMeta{Name: "fast", Namespace: lab.BarelbNamespace},
		Spec: barelbv1beta1.BFDProfileSpec{ReceiveInterval: ptr[uint32](100), TransmitInterval: ptr[uint32](100), DetectMultiplier: ptr[uint32](3)}}
	// Every peer gets the pool's routes.
	adv := &barelbv1beta1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "routed", Namespace: lab.BarelbNamespace},
		Spec: barelbv1beta1.BGPAdvertisementSpec{IPAddressPools: []string{"routed"}}}
	create(t, l, pool("routed", routedV4, routedV6), fast, adv)
	l.RunPod(t, "kinds-node1", "kinds", "node1")
	lbService(t, l, "kinds", "kinds", "routed", corev1.ServiceExternalTrafficPolicyCluster)
	v4, v6 := waitIngress(t, l, "kinds")
	l.WaitEndpoints(t, "kinds", 1)
	prefix := host(v4)
	kinds.v4, kinds.v6 = v4, v6
	steps := []struct {
		name string
		f    func(*testing.T, *lab.Lab, netip.Prefix)
	}{
		{"eBGP multihop to a router two hops away, with multihop BFD", testMultihop},
		{"graceful restart: the router keeps the routes while the speaker restarts", testGracefulRestart},
		{"dynamic ASN: external and internal", testDynamicASN},
		{"unnumbered: IPv4 and IPv6 routes over a link-local session, IPv4 with an IPv6 next hop", testUnnumbered},
	}
	for _, s := range steps {
		if !t.Run(s.name, func(t *testing.T) { s.f(t, l, prefix) }) {
			t.Logf("logs of the lab's processes: %s/logs", l.StateDir())
		}
	}
}

// kinds holds the addresses of the suite's Service.
var kinds struct{ v4, v6 netip.Addr }

// peerTo is a BGPPeer of node ASN to addr with the suite's timers.
func peerTo(name, addr string, asn uint32, edit func(*barelbv1beta1.BGPPeerSpec)) *barelbv1beta1.BGPPeer {
	p := &barelbv1beta1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: lab.BarelbNamespace},
		Spec: barelbv1beta1.BGPPeerSpec{
			MyASN: lab.NodeASN, PeerASN: asn, PeerAddress: addr,
			HoldTime: duration(holdTime), KeepaliveTime: duration(keepalive), ConnectTime: duration(2 * time.Second),
		}}
	if edit != nil {
		edit(&p.Spec)
	}
	return p
}

// farVtysh configures the far router (lines after `configure terminal`)
// and fails the test on a refused line.
func farVtysh(tb testing.TB, l *lab.Lab, lines ...string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := l.FarVtysh(ctx, append([]string{"configure terminal"}, lines...)...)
	if err != nil || strings.Contains(string(out), "% ") {
		tb.Fatalf("configuring the far router %q: %v: %s", lines, err, out)
	}
}

// waitFarPaths waits until the far router has paths for prefix exactly
// from these nodes.
func waitFarPaths(tb testing.TB, l *lab.Lab, prefix netip.Prefix, nodes []string, timeout time.Duration) []bgpPath {
	tb.Helper()
	return waitPathsOn(tb, l, l.FarVtysh, "far router", prefix, nodes, timeout)
}

// testMultihop peers node1 with FRR on the ext host, behind the router:
// the session needs ebgpMultiHop (the TTL of 1 of a plain eBGP session
// dies at the router), and its BFD session is a multihop one (RFC 5883),
// which alone tells the far router at once that node1 is cut off.
func testMultihop(t *testing.T, l *lab.Lab, prefix netip.Prefix) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.StartFarRouter(ctx); err != nil {
		t.Fatal(err)
	}
	farVtysh(t, l, "bfd", "profile fast", "receive-interval 100", "transmit-interval 100", "detect-multiplier 3", "exit", "exit",
		fmt.Sprintf("router bgp %d", lab.ExtRouterASN), "neighbor NODES bfd", "neighbor NODES bfd profile fast")
	farAddr := l.Ext().Addr(lab.SegmentExt, 4).String()
	create(t, l, peerTo("far", farAddr, lab.ExtRouterASN, func(s *barelbv1beta1.BGPPeerSpec) {
		s.EBGPMultiHop, s.BFDProfile = true, "fast"
	}))
	paths := waitFarPaths(t, l, prefix, []string{"node1"}, 60*time.Second)
	t.Logf("the far router, two hops away, has %s: %v", prefix, paths)
	node1 := nodeAddr(t, l, "node1", 4).String()
	lab.Eventually(t, 60*time.Second, "the far router's multihop BFD session with node1 up", func() (bool, string) {
		peers, err := bfdPeersOf(l.FarVtysh)
		if err != nil {
			return false, err.Error()
		}
		return peers[node1] == "up (multihop)", fmt.Sprint(peers)
	})
	waitMetric(t, l, "node1", "barelb_speaker_bfd_session_up", "far", func(v float64) bool { return v == 1 }, "1")

	// The far router's kernel has the route (its zebra resolves node1's
	// address through its default route).
	lab.Eventually(t, 30*time.Second, "the far router's kernel route to "+prefix.String(), func() (bool, string) {
		gws, err := kernelNextHopsOn(l, "ext", prefix)
		if err != nil {
			return false, err.Error()
		}
		return len(gws) > 0, fmt.Sprint(gws)
	})

	// node1 cut off from the router: the far router sees nothing of it
	// on its own links; BFD tells it in about 0.3 s, the hold time would
	// take 6-9 s. Measured on the far router's kernel route, polled every
	// few milliseconds.
	ns, port := routerPort(t, l, "node1")
	start := time.Now()
	if err := setLink(ns, port, "down"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = setLink(ns, port, "up") })
	var took time.Duration
	for {
		took = time.Since(start)
		gws, err := kernelNextHopsOn(l, "ext", prefix)
		if err == nil && len(gws) == 0 {
			break
		}
		if took > 3*holdTime {
			t.Fatalf("the far router still routes %s %v after node1 was cut off", prefix, took)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("node1 cut off: the far router dropped %s after %v (multihop BFD 100 ms × 3; hold time %v)", prefix, took.Round(time.Millisecond), holdTime)
	if took > maxWithBFD {
		t.Errorf("the far router dropped the route after %v; want multihop BFD's detection (about 0.3 s), not the hold time", took)
	}
	waitMetric(t, l, "node1", "barelb_speaker_bfd_session_up", "far", func(v float64) bool { return v == 0 }, "0")
	if err := setLink(ns, port, "up"); err != nil {
		t.Fatal(err)
	}
	waitFarPaths(t, l, prefix, []string{"node1"}, 60*time.Second)
}

// testGracefulRestart: without graceful restart a SIGKILLed speaker's
// routes go at once (its kernel closes TCP); with it, the router keeps
// them, stale, and the restarted speaker refreshes them.
func testGracefulRestart(t *testing.T, l *lab.Lab, prefix netip.Prefix) {
	routerAddr := l.Router().Addr(lab.SegmentRouter, 4).String()
	plain := peerTo("plain", routerAddr, lab.RouterASN, nil)
	create(t, l, plain)
	waitKernelNodes(t, l, prefix, []string{"node1"}, 60*time.Second)
	start := time.Now()
	if err := l.Kill("node1", lab.ComponentSpeaker); err != nil {
		t.Fatal(err)
	}
	took, gone := measureWithdrawal(l, prefix, "node1", start, 30*time.Second)
	t.Logf("without graceful restart: SIGKILL of the speaker -> route gone after %v", took.Round(time.Millisecond))
	if !gone {
		t.Fatalf("without graceful restart the route stayed %v after the speaker was killed", took)
	}
	l.RestartSpeaker(t, "node1")
	waitKernelNodes(t, l, prefix, []string{"node1"}, 60*time.Second)
	if err := l.Client().Delete(context.Background(), plain); err != nil {
		t.Fatal(err)
	}
	waitKernelNodes(t, l, prefix, nil, 30*time.Second)

	create(t, l, peerTo("gr", routerAddr, lab.RouterASN, func(s *barelbv1beta1.BGPPeerSpec) { s.EnableGracefulRestart = true }))
	waitKernelNodes(t, l, prefix, []string{"node1"}, 60*time.Second)
	waitGracefulRestart(t, l, "node1")

	// SIGKILL: the router keeps the route, stale, for as long as the
	// speaker is away (here 5 s; GoBGP asks for 120 s).
	killed := time.Now()
	if err := l.Kill("node1", lab.ComponentSpeaker); err != nil {
		t.Fatal(err)
	}
	sawStale := false
	for time.Since(killed) < 5*time.Second {
		gws, err := kernelNextHops(l, prefix)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(nodesOf(l, gws)) != "[node1]" {
			t.Fatalf("with graceful restart the router dropped %s %v after the speaker was killed (routes via %v)",
				prefix, time.Since(killed).Round(time.Millisecond), nodesOf(l, gws))
		}
		if paths, err := routerPaths(l, prefix); err == nil && len(paths) == 1 && paths[0].Stale {
			sawStale = true
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !sawStale {
		t.Errorf("the router kept %s but never marked the path stale", prefix)
	}
	t.Logf("with graceful restart: the router kept %s via node1 (stale %v) for the 5 s the speaker was away", prefix, sawStale)
	l.RestartSpeaker(t, "node1")
	lab.Eventually(t, 60*time.Second, "a fresh (not stale) path from node1 after the restart", func() (bool, string) {
		paths, err := routerPaths(l, prefix)
		if err != nil {
			return false, err.Error()
		}
		return len(paths) == 1 && !paths[0].Stale && fmt.Sprint(nodesOf(l, paths[0].NextHops)) == "[node1]", fmt.Sprint(paths)
	})
	t.Logf("the restarted speaker refreshed the path %v after the kill", time.Since(killed).Round(time.Millisecond))

	// A rolling restart (SIGTERM, as Kubernetes does): the route must not
	// go either.
	stopped := time.Now()
	done := make(chan struct{})
	var lost time.Duration
	go func() {
		defer close(done)
		for time.Since(stopped) < 15*time.Second {
			gws, err := kernelNextHops(l, prefix)
			if err == nil && len(gws) == 0 {
				lost = time.Since(stopped)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	l.RestartSpeaker(t, "node1")
	<-done
	if lost > 0 {
		t.Errorf("with graceful restart the router dropped %s %v into a SIGTERM restart of the speaker", prefix, lost.Round(time.Millisecond))
	} else {
		t.Logf("SIGTERM restart: the router kept %s throughout", prefix)
	}
	lab.Eventually(t, 60*time.Second, "a fresh path from node1 after the SIGTERM restart", func() (bool, string) {
		paths, err := routerPaths(l, prefix)
		if err != nil {
			return false, err.Error()
		}
		return len(paths) == 1 && !paths[0].Stale, fmt.Sprint(paths)
	})
}

// testDynamicASN: dynamicASN external takes the router's ASN from its
// OPEN; dynamicASN internal peers with a router of our own ASN.
func testDynamicASN(t *testing.T, l *lab.Lab, prefix netip.Prefix) {
	routerAddr := l.Router().Addr(lab.SegmentRouter, 4).String()
	ext := peerTo("dyn-external", routerAddr, 0, func(s *barelbv1beta1.BGPPeerSpec) { s.DynamicASN = barelbv1beta1.ExternalASNMode })
	create(t, l, ext)
	paths := waitPaths(t, l, prefix, []string{"node1"}, 60*time.Second)
	if paths[0].Type != "external" {
		t.Errorf("dynamicASN external: the router has %v, want an external path", paths)
	}
	t.Logf("dynamicASN external: %v", paths)
	if err := l.Client().Delete(context.Background(), ext); err != nil {
		t.Fatal(err)
	}
	waitPaths(t, l, prefix, nil, 30*time.Second)

	// The router takes its own ASN from the nodes now: iBGP.
	configureRouter(t, l, []string{fmt.Sprintf("router bgp %d", lab.RouterASN), "neighbor " + lab.RouterPeerGroup + " remote-as internal"},
		[]string{fmt.Sprintf("router bgp %d", lab.RouterASN), fmt.Sprintf("neighbor %s remote-as %d", lab.RouterPeerGroup, lab.NodeASN)})
	create(t, l, peerTo("dyn-internal", routerAddr, 0, func(s *barelbv1beta1.BGPPeerSpec) {
		s.MyASN, s.DynamicASN = lab.RouterASN, barelbv1beta1.InternalASNMode
	}))
	paths = waitPaths(t, l, prefix, []string{"node1"}, 60*time.Second)
	if paths[0].Type != "internal" {
		t.Errorf("dynamicASN internal: the router has %v, want an internal path", paths)
	}
	t.Logf("dynamicASN internal: %v", paths)
}

// testUnnumbered peers node1 with the router over their shared link
// alone (BGPPeer.interface; FRR's `neighbor eth0 interface`): no address
// is configured on either side, the router learns node1's link-local
// address from its Router Advertisements, and the IPv4 route arrives with
// node1's IPv6 link-local next hop (RFC 8950) and carries traffic from the
// host behind the router.
func testUnnumbered(t *testing.T, l *lab.Lab, _ netip.Prefix) {
	rasn := fmt.Sprintf("router bgp %d", lab.RouterASN)
	routerIf := l.Router().Interface(lab.SegmentRouter)
	configureRouter(t, l, []string{rasn, fmt.Sprintf("neighbor %s interface remote-as %d", routerIf, lab.NodeASN),
		"address-family ipv6 unicast", "neighbor " + routerIf + " activate", "exit-address-family"},
		[]string{rasn, "no neighbor " + routerIf + " interface"})
	nodeIf := l.Nodes()[0].Interface(lab.SegmentRouter)
	start := time.Now()
	create(t, l, peerTo("unnumbered", "", lab.RouterASN, func(s *barelbv1beta1.BGPPeerSpec) { s.Interface = nodeIf }))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := l.Exec(ctx, "node1", "ip", "-6", "-o", "addr", "show", "dev", nodeIf, "scope", "link")
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(out))
	var linkLocal string
	for i, f := range fields {
		if f == "inet6" && i+1 < len(fields) {
			linkLocal = strings.Split(fields[i+1], "/")[0]
		}
	}
	if linkLocal == "" {
		t.Fatalf("node1 has no link-local address on %s: %s", nodeIf, out)
	}
	for _, vip := range []netip.Addr{kinds.v4, kinds.v6} {
		family := "-4"
		if vip.Is6() {
			family = "-6"
		}
		want := "via " + linkLocal + " dev " + routerIf
		if vip.Is4() {
			want = "via inet6 " + linkLocal + " dev " + routerIf
		}
		lab.Eventually(t, 90*time.Second, fmt.Sprintf("the router's kernel route to %s %s", vip, want), func() (bool, string) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			out, err := l.Exec(ctx, "router", "ip", family, "route", "show", "exact", host(vip).String())
			if err != nil {
				return false, err.Error()
			}
			if strings.Contains(string(out), want) {
				return true, ""
			}
			summary, _ := l.Vtysh(ctx, "show bgp neighbors "+routerIf)
			neigh, _ := l.Exec(ctx, "node1", "ip", "-6", "neigh", "show", "dev", nodeIf)
			return false, fmt.Sprintf("route %q; node1's neighbours on %s:\n%s\nthe router's neighbour %s:\n%s", out, nodeIf, neigh, routerIf, summary)
		})
		t.Logf("unnumbered: the router routes %s via node1's link-local %s (%v after the BGPPeer was created)", vip, linkLocal, time.Since(start).Round(time.Millisecond))
	}
	answer := waitReached(t, l, "ext", lab.URL(kinds.v4.String()))
	t.Logf("ext reached %s over the IPv4 route with an IPv6 next hop: %q", kinds.v4, answer)
}
