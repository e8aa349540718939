package bgp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/e2etest/lab"
	"github.com/barelb/barelb/internal/config"
)

// needsLab: see lab.NeedsLab.
func needsLab(tb testing.TB) { tb.Helper(); lab.NeedsLab(tb, "the BGP suite") }

// create creates objects, and deletes them when the test ends.
func create(tb testing.TB, l *lab.Lab, objs ...client.Object) {
	tb.Helper()
	for _, obj := range objs {
		if err := l.Client().Create(context.Background(), obj); err != nil {
			tb.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
		}
		tb.Cleanup(func() {
			if err := l.Client().Delete(context.Background(), obj); err != nil && !apierrors.IsNotFound(err) {
				tb.Errorf("deleting %T %s: %v", obj, obj.GetName(), err)
			}
		})
	}
}

// update re-reads obj, applies edit and writes it back.
func update[T client.Object](tb testing.TB, l *lab.Lab, obj T, edit func(T)) {
	tb.Helper()
	ctx := context.Background()
	for attempt := 0; ; attempt++ {
		if err := l.Client().Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			tb.Fatal(err)
		}
		edit(obj)
		err := l.Client().Update(ctx, obj)
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) || attempt > 5 {
			tb.Fatalf("updating %T %s: %v", obj, obj.GetName(), err)
		}
	}
}

func pool(name string, addresses ...string) *barelbv1beta1.IPAddressPool {
	p := &barelbv1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: lab.BarelbNamespace}}
	for _, a := range addresses {
		p.Spec.Addresses = append(p.Spec.Addresses, barelbv1beta1.AddressRange(a))
	}
	// Only Services that ask for a pool of this suite get its addresses.
	no := false
	p.Spec.AutoAssign = &no
	return p
}

func duration(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

func ptr[T any](v T) *T { return &v }

// onNode selects one node by hostname.
func onNode(node string) []barelbv1beta1.Selector {
	return []barelbv1beta1.Selector{{MatchLabels: map[string]barelbv1beta1.LabelValue{corev1.LabelHostname: barelbv1beta1.LabelValue(node)}}}
}

// lbService creates a dual-stack LoadBalancer Service selecting app=APP,
// port 80 to the pods' 8080, with addresses from the named pool.
func lbService(tb testing.TB, l *lab.Lab, name, app, fromPool string, policy corev1.ServiceExternalTrafficPolicy) *corev1.Service {
	tb.Helper()
	dual := corev1.IPFamilyPolicyPreferDualStack
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default",
			Annotations: map[string]string{config.AnnotationAddressPool: fromPool}},
		Spec: corev1.ServiceSpec{
			Type:                  corev1.ServiceTypeLoadBalancer,
			IPFamilyPolicy:        &dual,
			IPFamilies:            []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol},
			ExternalTrafficPolicy: policy,
			Selector:              map[string]string{"app": app},
			Ports:                 []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	create(tb, l, svc)
	return svc
}

// deleteService deletes a Service now.
func deleteService(tb testing.TB, l *lab.Lab, name string) {
	tb.Helper()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}
	if err := l.Client().Delete(context.Background(), svc); err != nil {
		tb.Fatal(err)
	}
}

// waitIngress waits for the Service's two load-balancer addresses and
// returns them, IPv4 first.
func waitIngress(tb testing.TB, l *lab.Lab, name string) (v4, v6 netip.Addr) {
	tb.Helper()
	lab.Eventually(tb, 30*time.Second, "addresses of Service "+name, func() (bool, string) {
		var svc corev1.Service
		if err := l.Client().Get(context.Background(), client.ObjectKey{Namespace: "default", Name: name}, &svc); err != nil {
			return false, err.Error()
		}
		v4, v6 = netip.Addr{}, netip.Addr{}
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if a, err := netip.ParseAddr(in.IP); err == nil && a.Is4() {
				v4 = a
			} else if err == nil {
				v6 = a
			}
		}
		return v4.IsValid() && v6.IsValid(), fmt.Sprint(svc.Status.LoadBalancer.Ingress)
	})
	tb.Logf("Service %s has %s and %s", name, v4, v6)
	return v4, v6
}

// host prefix of an address: /32 or /128.
func host(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// nodeAddr is a node's address on the router segment.
func nodeAddr(tb testing.TB, l *lab.Lab, node string, family int) netip.Addr {
	tb.Helper()
	h, err := l.Host(node)
	if err != nil {
		tb.Fatal(err)
	}
	return h.Addr(lab.SegmentRouter, family)
}

// nodeOf names the node with this address on the router segment (the
// address itself when none has it).
func nodeOf(l *lab.Lab, a string) string {
	for _, n := range l.Nodes() {
		if n.Addr(lab.SegmentRouter, 4).String() == a || n.Addr(lab.SegmentRouter, 6).String() == a {
			return n.Name
		}
	}
	return a
}

// nodesOf maps addresses of the router segment to node names, sorted.
func nodesOf(l *lab.Lab, addrs []string) []string {
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, nodeOf(l, a))
	}
	sort.Strings(out)
	return out
}

func allNodes(l *lab.Lab) []string {
	var out []string
	for _, n := range l.Nodes() {
		out = append(out, n.Name)
	}
	sort.Strings(out)
	return out
}

// bgpPath is one path of a prefix in the router's BGP table.
type bgpPath struct {
	// Peer is the address of the session the path came from.
	Peer string
	// Type is "external" or "internal".
	Type     string
	NextHops []string
	// Communities and LargeCommunities are FRR's strings ("65000:100
	// 65000:200"); empty when the path has none.
	Communities, LargeCommunities string
	// LocalPref is FRR's locPrf; FRR shows it for iBGP paths only.
	LocalPref *uint32
	Best      bool
	Multipath bool
	// Stale is set while a graceful restart keeps the path (RFC 4724).
	Stale bool
}

func (p bgpPath) String() string {
	lp := "-"
	if p.LocalPref != nil {
		lp = strconv.Itoa(int(*p.LocalPref))
	}
	return fmt.Sprintf("from %s (%s) via %v communities %q large %q localPref %s best %v multipath %v stale %v",
		p.Peer, p.Type, p.NextHops, p.Communities, p.LargeCommunities, lp, p.Best, p.Multipath, p.Stale)
}

// routerPaths returns the router's BGP paths for exactly this prefix (none
// when it has no such route), from `show bgp ipv4|ipv6 unicast PREFIX
// json`.
func routerPaths(l *lab.Lab, prefix netip.Prefix) ([]bgpPath, error) {
	return pathsOf(l.Vtysh, prefix)
}

// pathsOf is routerPaths of the FRR that vtysh talks to (the router's,
// or the far router's: lab.FarVtysh).
func pathsOf(vtysh func(context.Context, ...string) ([]byte, error), prefix netip.Prefix) ([]bgpPath, error) {
	afi := "ipv4"
	if prefix.Addr().Is6() {
		afi = "ipv6"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := vtysh(ctx, fmt.Sprintf("show bgp %s unicast %s json", afi, prefix))
	if err != nil {
		return nil, err
	}
	var doc struct {
		Prefix string `json:"prefix"`
		Paths  []struct {
			Peer struct {
				PeerID string `json:"peerId"`
				Type   string `json:"type"`
			} `json:"peer"`
			NextHops []struct {
				IP    string `json:"ip"`
				Scope string `json:"scope"`
			} `json:"nexthops"`
			Community struct {
				String string `json:"string"`
			} `json:"community"`
			LargeCommunity struct {
				String string `json:"string"`
			} `json:"largeCommunity"`
			LocPrf    *uint32         `json:"locPrf"`
			LocalPref *uint32         `json:"localpref"`
			BestPath  json.RawMessage `json:"bestpath"`
			Multipath bool            `json:"multipath"`
			Stale     bool            `json:"stale"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", out, err)
	}
	// FRR answers with the longest match, or nothing; only the prefix
	// itself counts.
	if doc.Prefix != prefix.String() {
		return nil, nil
	}
	var paths []bgpPath
	for _, p := range doc.Paths {
		bp := bgpPath{Peer: p.Peer.PeerID, Type: p.Peer.Type, Communities: p.Community.String,
			LargeCommunities: p.LargeCommunity.String, Multipath: p.Multipath, LocalPref: p.LocPrf, Stale: p.Stale}
		if bp.LocalPref == nil {
			bp.LocalPref = p.LocalPref
		}
		bp.Best = len(p.BestPath) > 0 && string(p.BestPath) != "null" && string(p.BestPath) != "false"
		for _, nh := range p.NextHops {
			if nh.Scope == "link-local" {
				continue
			}
			bp.NextHops = append(bp.NextHops, nh.IP)
		}
		paths = append(paths, bp)
	}
	sort.Slice(paths, func(i, j int) bool { return paths[i].Peer < paths[j].Peer })
	return paths, nil
}

// kernelNextHops returns the gateways of the router's kernel route to
// exactly this prefix, sorted (none when there is no route).
func kernelNextHops(l *lab.Lab, prefix netip.Prefix) ([]string, error) {
	return kernelNextHopsOn(l, "router", prefix)
}

// kernelNextHopsOn is kernelNextHops of another host's kernel (ext runs
// the far router).
func kernelNextHopsOn(l *lab.Lab, host string, prefix netip.Prefix) ([]string, error) {
	family := "-4"
	if prefix.Addr().Is6() {
		family = "-6"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := l.Exec(ctx, host, "ip", "-j", family, "route", "show", "exact", prefix.String())
	if err != nil {
		return nil, err
	}
	var routes []struct {
		Gateway  string `json:"gateway"`
		NextHops []struct {
			Gateway string `json:"gateway"`
		} `json:"nexthops"`
	}
	if err := json.Unmarshal(out, &routes); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", out, err)
	}
	var gws []string
	for _, r := range routes {
		if r.Gateway != "" {
			gws = append(gws, r.Gateway)
		}
		for _, nh := range r.NextHops {
			gws = append(gws, nh.Gateway)
		}
	}
	sort.Strings(gws)
	return gws, nil
}

// waitKernelNodes waits until the router's kernel route to prefix goes
// to exactly these nodes (none: no route) and returns how long it took.
func waitKernelNodes(tb testing.TB, l *lab.Lab, prefix netip.Prefix, nodes []string, timeout time.Duration) time.Duration {
	tb.Helper()
	start := time.Now()
	want := fmt.Sprint(nodes)
	lab.Eventually(tb, timeout, fmt.Sprintf("the router's kernel route to %s via %s", prefix, want), func() (bool, string) {
		gws, err := kernelNextHops(l, prefix)
		if err != nil {
			return false, err.Error()
		}
		got := nodesOf(l, gws)
		if len(got) == 0 {
			got = nil
		}
		if fmt.Sprint(got) == want || (len(nodes) == 0 && len(got) == 0) {
			return true, ""
		}
		sessions, _ := routerSessions(l, "ipv4Unicast")
		return false, fmt.Sprintf("via %v; the router's IPv4 sessions: %v", got, sessions)
	})
	return time.Since(start)
}

// waitPaths waits until the router's BGP table has paths for prefix from
// exactly these nodes (by next hop) and returns them.
func waitPaths(tb testing.TB, l *lab.Lab, prefix netip.Prefix, nodes []string, timeout time.Duration) []bgpPath {
	tb.Helper()
	return waitPathsOn(tb, l, l.Vtysh, "router", prefix, nodes, timeout)
}

// waitPathsOn is waitPaths on the FRR that vtysh talks to (router names
// it in messages); the wait's message shows its sessions too.
func waitPathsOn(tb testing.TB, l *lab.Lab, vtysh func(context.Context, ...string) ([]byte, error), router string, prefix netip.Prefix, nodes []string, timeout time.Duration) []bgpPath {
	tb.Helper()
	var paths []bgpPath
	want := fmt.Sprint(nodes)
	lab.Eventually(tb, timeout, fmt.Sprintf("BGP paths to %s from %s on the %s", prefix, want, router), func() (bool, string) {
		var err error
		paths, err = pathsOf(vtysh, prefix)
		if err != nil {
			return false, err.Error()
		}
		var hops []string
		for _, p := range paths {
			hops = append(hops, p.NextHops...)
		}
		got := nodesOf(l, hops)
		if len(got) == 0 {
			got = nil
		}
		ok := fmt.Sprint(got) == want || (len(nodes) == 0 && len(got) == 0)
		if ok {
			return true, ""
		}
		family := "ipv4Unicast"
		if prefix.Addr().Is6() {
			family = "ipv6Unicast"
		}
		sessions, _ := sessionsOf(vtysh, family)
		return false, fmt.Sprintf("paths %v; sessions %v", paths, sessions)
	})
	return paths
}

// sessionState is one of the router's BGP sessions.
type sessionState struct {
	State  string
	PfxRcd int
}

// routerSessions returns the router's sessions by peer address, from
// `show bgp summary json`, for one address family ("ipv4Unicast" or
// "ipv6Unicast").
func routerSessions(l *lab.Lab, family string) (map[string]sessionState, error) {
	return sessionsOf(l.Vtysh, family)
}

// sessionsOf is routerSessions of the FRR that vtysh talks to.
func sessionsOf(vtysh func(context.Context, ...string) ([]byte, error), family string) (map[string]sessionState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := vtysh(ctx, "show bgp summary json")
	if err != nil {
		return nil, err
	}
	var doc map[string]struct {
		Peers map[string]struct {
			State  string `json:"state"`
			PfxRcd int    `json:"pfxRcd"`
		} `json:"peers"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", out, err)
	}
	res := map[string]sessionState{}
	for addr, p := range doc[family].Peers {
		res[addr] = sessionState{State: p.State, PfxRcd: p.PfxRcd}
	}
	return res, nil
}

// waitSessions waits until the router has an established IPv4 session
// with exactly these nodes.
func waitSessions(tb testing.TB, l *lab.Lab, nodes []string, timeout time.Duration) {
	tb.Helper()
	want := fmt.Sprint(nodes)
	lab.Eventually(tb, timeout, "established sessions with "+want, func() (bool, string) {
		s, err := routerSessions(l, "ipv4Unicast")
		if err != nil {
			return false, err.Error()
		}
		var up []string
		for addr, st := range s {
			if st.State == "Established" {
				up = append(up, addr)
			}
		}
		got := nodesOf(l, up)
		if len(got) == 0 {
			got = nil
		}
		return fmt.Sprint(got) == want || (len(nodes) == 0 && len(got) == 0), fmt.Sprint(s)
	})
}

// bfdPeers returns the router's BFD sessions: peer address → status,
// "up" only once the session has been up for 2 s (a session that has just
// come back may still run at the slow pace of RFC 5880 6.8.3).
func bfdPeers(l *lab.Lab) (map[string]string, error) {
	return bfdPeersOf(l.Vtysh)
}

// bfdPeersOf is bfdPeers of the FRR that vtysh talks to; a multihop
// session's status is suffixed " (multihop)".
func bfdPeersOf(vtysh func(context.Context, ...string) ([]byte, error)) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := vtysh(ctx, "show bfd peers json")
	if err != nil {
		return nil, err
	}
	var peers []struct {
		Peer     string `json:"peer"`
		Status   string `json:"status"`
		Uptime   int    `json:"uptime"`
		Multihop bool   `json:"multihop"`
	}
	if err := json.Unmarshal(out, &peers); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", out, err)
	}
	res := map[string]string{}
	for _, p := range peers {
		res[p.Peer] = p.Status
		if p.Status == "up" && p.Uptime < 2 {
			res[p.Peer] = fmt.Sprintf("up for %d s", p.Uptime)
		}
		if p.Multihop {
			res[p.Peer] += " (multihop)"
		}
	}
	return res, nil
}

// configureRouter changes the router's FRR configuration (see
// lab.ConfigureRouter) and, when the test ends, applies undo (if any).
func configureRouter(tb testing.TB, l *lab.Lab, do, undo []string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.ConfigureRouter(ctx, do...); err != nil {
		tb.Fatal(err)
	}
	if len(undo) == 0 {
		return
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := l.ConfigureRouter(ctx, undo...); err != nil {
			tb.Error(err)
		}
	})
}

// routerGet requests url from host (router, ext) n times, one connection
// each, and counts the answers.
func routerGet(l *lab.Lab, from, url string, n int) map[string]int {
	seen := map[string]int{}
	for range n {
		answer, err := l.Get(from, url, 2*time.Second)
		if err != nil {
			answer = "error: " + err.Error()
		}
		seen[answer]++
	}
	return seen
}

// waitReached waits until from gets an answer from url.
func waitReached(tb testing.TB, l *lab.Lab, from, url string) string {
	tb.Helper()
	var answer string
	lab.Eventually(tb, 30*time.Second, from+" reaching "+url, func() (bool, string) {
		var err error
		answer, err = l.Get(from, url, time.Second)
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	return answer
}

// bgpStatuses returns the nodes of the ServiceBGPStatus objects of a
// Service in default, with the peers each names.
func bgpStatuses(l *lab.Lab, svc string) (map[string][]string, error) {
	var list barelbv1beta1.ServiceBGPStatusList
	if err := l.Client().List(context.Background(), &list, client.InNamespace(lab.BarelbNamespace)); err != nil {
		return nil, err
	}
	res := map[string][]string{}
	for _, s := range list.Items {
		if s.Status.ServiceName == svc && s.Status.ServiceNamespace == "default" {
			res[s.Status.Node] = append([]string(nil), s.Status.Peers...)
		}
	}
	return res, nil
}

// waitStatuses waits until a Service's ServiceBGPStatus objects are one
// per node named, each listing these peers.
func waitStatuses(tb testing.TB, l *lab.Lab, svc string, nodes []string, peers ...string) {
	tb.Helper()
	want := map[string][]string{}
	for _, n := range nodes {
		want[n] = peers
	}
	lab.Eventually(tb, 60*time.Second, fmt.Sprintf("ServiceBGPStatus of %s: %v", svc, want), func() (bool, string) {
		got, err := bgpStatuses(l, svc)
		if err != nil {
			return false, err.Error()
		}
		for _, ps := range got {
			sort.Strings(ps)
		}
		return fmt.Sprint(got) == fmt.Sprint(want), fmt.Sprint(got)
	})
}

// waitEvent waits for an Event of this type and reason on a BGPPeer,
// newer than since, whose message satisfies match, and returns the
// message.
func waitEvent(tb testing.TB, l *lab.Lab, peer, typ, reason string, since time.Time, match func(string) bool) string {
	tb.Helper()
	var msg string
	lab.Eventually(tb, 90*time.Second, fmt.Sprintf("a %s Event %s on BGPPeer %s", typ, reason, peer), func() (bool, string) {
		var events corev1.EventList
		if err := l.Client().List(context.Background(), &events, client.InNamespace(lab.BarelbNamespace)); err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, e := range events.Items {
			if e.InvolvedObject.Kind != "BGPPeer" || e.InvolvedObject.Name != peer {
				continue
			}
			last := e.LastTimestamp.Time
			if e.EventTime.After(last) {
				last = e.EventTime.Time
			}
			if e.Series != nil && e.Series.LastObservedTime.After(last) {
				last = e.Series.LastObservedTime.Time
			}
			seen = append(seen, fmt.Sprintf("%s %s %q", e.Type, e.Reason, e.Message))
			// Event times have a resolution of one second.
			if e.Type == typ && e.Reason == reason && !last.Before(since.Truncate(time.Second)) && (match == nil || match(e.Message)) {
				msg = e.Message
				return true, ""
			}
		}
		return false, fmt.Sprint(seen)
	})
	return msg
}

// peerMetric sums the series of a metric whose peer label is peer.
func peerMetric(m map[string]float64, name, peer string) (float64, bool) {
	var sum float64
	found := false
	for series, v := range m {
		if strings.HasPrefix(series, name+"{") && strings.Contains(series, `peer="`+peer+`"`) {
			sum += v
			found = true
		}
	}
	return sum, found
}

// waitMetric waits until a speaker's metric for a peer satisfies ok and
// returns its value.
func waitMetric(tb testing.TB, l *lab.Lab, node, name, peer string, ok func(float64) bool, what string) float64 {
	tb.Helper()
	var v float64
	lab.Eventually(tb, 60*time.Second, fmt.Sprintf("%s{peer=%q} on %s to be %s", name, peer, node, what), func() (bool, string) {
		m, err := l.SpeakerMetrics(node)
		if err != nil {
			return false, err.Error()
		}
		var found bool
		v, found = peerMetric(m, name, peer)
		if !found {
			var bgp []string
			for k := range m {
				if strings.Contains(k, "bgp") || strings.Contains(k, "bfd") {
					bgp = append(bgp, k)
				}
			}
			sort.Strings(bgp)
			return false, fmt.Sprintf("no such series; BGP series: %v", bgp)
		}
		return ok(v), fmt.Sprint(v)
	})
	return v
}

// routerPort returns the bridge namespace and the port of a node's link
// to the router segment: taking it down cuts the node off the router
// without its kernel telling anyone.
func routerPort(tb testing.TB, l *lab.Lab, node string) (ns, port string) {
	tb.Helper()
	h, err := l.Host(node)
	if err != nil {
		tb.Fatal(err)
	}
	for _, ifc := range h.Interfaces {
		if ifc.Segment == lab.SegmentRouter {
			return l.State().Bridges[lab.SegmentRouter], ifc.Port
		}
	}
	tb.Fatalf("%s has no link to the router segment", node)
	return "", ""
}

// setLink takes a bridge port up or down.
func setLink(ns, port, state string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "-n", ns, "link", "set", port, state).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip -n %s link set %s %s: %w: %s", ns, port, state, err, out)
	}
	return nil
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// measureWithdrawal polls the router's kernel route to prefix every few
// milliseconds until no next hop of it is node's, and returns the time
// since start (or false after limit).
func measureWithdrawal(l *lab.Lab, prefix netip.Prefix, node string, start time.Time, limit time.Duration) (time.Duration, bool) {
	for time.Since(start) < limit {
		gws, err := kernelNextHops(l, prefix)
		if err == nil {
			gone := true
			for _, n := range nodesOf(l, gws) {
				if n == node {
					gone = false
				}
			}
			if gone {
				return time.Since(start), true
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start), false
}

// waitAnnounced waits until the Service's barelb.io/Announced condition
// has the status and reason, and its message contains every fragment.
func waitAnnounced(tb testing.TB, l *lab.Lab, svc string, status metav1.ConditionStatus, reason string, fragments ...string) string {
	tb.Helper()
	var said string
	lab.Eventually(tb, 30*time.Second, "Announced condition of "+svc+": "+reason, func() (bool, string) {
		var s corev1.Service
		if err := l.Client().Get(context.Background(), client.ObjectKey{Namespace: "default", Name: svc}, &s); err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(s.Status.Conditions, barelbv1beta1.ConditionAnnounced)
		if c == nil {
			return false, "no condition"
		}
		said = string(c.Status) + " " + c.Reason + ": " + c.Message
		if c.Status != status || c.Reason != reason {
			return false, said
		}
		for _, f := range fragments {
			if !strings.Contains(c.Message, f) {
				return false, said
			}
		}
		return true, said
	})
	return said
}
