package bgpadvertiser

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
	"github.com/barelb/barelb/internal/k8s/l2announcer"
	"github.com/barelb/barelb/internal/testenv"
	"github.com/barelb/barelb/internal/testutil"
)

// The lab: testenv.NewLink joins a speaker namespace (198.51.100.1, plus
// .2 and .3 added here) and a router namespace (198.51.100.100, plus .101
// and .102 added here) where FRR's zebra, bgpd and bfdd run by hand. Each
// BGPPeer names its own router address, as peers of distinct routers
// would: the speaker runs them all on one GoBGP server. GoBGP dials from its own
// goroutines, which may run on any thread, so the test runs itself again,
// whole, inside the speaker namespace, and starts the API server there
// too (on that namespace's loopback).
const (
	labEnv     = "BARELB_ADVERTISER_LAB"
	namespace  = "barelb-system"
	nodeName   = "node-a"
	routerASN  = 64501
	nodeASN    = 64500
	routerAddr = "198.51.100.100"
	// The router's addresses for the peers "md5" and "bfd".
	routerMD5 = "198.51.100.101"
	routerBFD = "198.51.100.102"
	md5Secret = "s3cret"
)

type labSpec struct {
	Router, RouterIf string
}

func TestAdvertiserFRR(t *testing.T) {
	if os.Getenv(labEnv) != "" {
		t.Skip("the outer half of the lab test")
	}
	link := testenv.NewLink(t)
	// The API server runs in there too: on loopback, and it needs a
	// default route to find its advertise address.
	link.Run("ip", "-n", link.Speaker, "link", "set", "lo", "up")
	link.Run("ip", "-n", link.Speaker, "route", "add", "default", "via", "198.51.100.100")
	for _, a := range []string{"198.51.100.2/24", "198.51.100.3/24"} {
		link.Run("ip", "-n", link.Speaker, "addr", "add", a, "dev", link.SpeakerIf)
	}
	for _, a := range []string{routerMD5 + "/24", routerBFD + "/24"} {
		link.Run("ip", "-n", link.Client, "addr", "add", a, "dev", link.ClientIf)
	}
	testenv.RerunInNetns(t, link.Speaker, "TestAdvertiserLab", labEnv, labSpec{Router: link.Client, RouterIf: link.ClientIf})
}

// TestAdvertiserLab runs inside the speaker namespace, started by
// TestAdvertiserFRR.
func TestAdvertiserLab(t *testing.T) {
	var spec labSpec
	if !testenv.ReadRerunSpec(t, labEnv, &spec) {
		t.Skip("run by TestAdvertiserFRR inside the speaker namespace")
	}
	router := startFRR(t, spec.Router, spec.RouterIf)
	env := testenv.Start(t, testenv.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c := env.Client
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	eventsOf := func(name, reason string) []corev1.Event {
		var events corev1.EventList
		_ = c.List(ctx, &events, client.InNamespace(namespace))
		var out []corev1.Event
		for _, e := range events.Items {
			if e.Reason == reason && e.InvolvedObject.Name == name {
				out = append(out, e)
			}
		}
		return out
	}
	waitEvent := func(t *testing.T, name, reason string, timeout time.Duration) corev1.Event {
		t.Helper()
		var ev corev1.Event
		testutil.Eventually(t, timeout, fmt.Sprintf("Event %s on %s", reason, name), func() (bool, string) {
			evs := eventsOf(name, reason)
			if len(evs) == 0 {
				return false, "none yet"
			}
			ev = evs[len(evs)-1]
			return true, ""
		})
		t.Logf("Event %s %s on %s: %s", ev.Type, ev.Reason, name, ev.Message)
		if !strings.Contains(ev.Message, nodeName) {
			t.Errorf("Event %s does not name the node: %q", reason, ev.Message)
		}
		return ev
	}

	must(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}))
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, Labels: map[string]string{"bgp": "yes"}}}
	must(c.Create(ctx, node))
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.51.100.1"}}
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	must(c.Status().Update(ctx, node))
	pool := &barelbv1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: "vips", Namespace: namespace}}
	pool.Spec.Addresses = []barelbv1beta1.AddressRange{"203.0.113.0/24"}
	must(c.Create(ctx, pool))
	adv := &barelbv1beta1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "vips", Namespace: namespace}}
	adv.Spec.IPAddressPools = []string{"vips"}
	adv.Spec.Communities = []barelbv1beta1.CommunityRef{"64500:7"}
	must(c.Create(ctx, adv))
	peer := func(name, source string, mutate func(*barelbv1beta1.BGPPeerSpec)) *barelbv1beta1.BGPPeer {
		p := &barelbv1beta1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
		address := map[string]string{"md5": routerMD5, "bfd": routerBFD}[name]
		if address == "" {
			address = routerAddr
		}
		p.Spec = barelbv1beta1.BGPPeerSpec{MyASN: nodeASN, PeerASN: routerASN, PeerAddress: address, SourceAddress: source,
			HoldTime: &metav1.Duration{Duration: 9 * time.Second}, ConnectTime: &metav1.Duration{Duration: 2 * time.Second},
			NodeSelectors: []barelbv1beta1.Selector{{MatchLabels: map[string]barelbv1beta1.LabelValue{"bgp": "yes"}}}}
		if mutate != nil {
			mutate(&p.Spec)
		}
		return p
	}
	must(c.Create(ctx, peer("router", "198.51.100.1", nil)))

	// A manager like the speaker's: the announcer's cache transforms
	// trim what the advertiser reads too.
	byObject := map[client.Object]cache.ByObject{}
	for obj, tr := range l2announcer.CacheTransforms() {
		byObject[obj] = cache.ByObject{Transform: tr}
	}
	opts := env.ManagerOptions(testr.New(t))
	opts.Cache = cache.Options{ByObject: byObject, DefaultTransform: cache.TransformStripManagedFields()}
	mgr, err := ctrl.NewManager(env.Config, opts)
	must(err)
	reg := prometheus.NewRegistry()
	must(Setup(ctx, mgr, Options{Node: nodeName, Namespace: namespace, Registerer: reg, NotEstablishedAfter: 6 * time.Second}))
	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Start(ctx) }()

	metric := func(name, peer string) float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "peer" && l.GetValue() == peer {
						if m.GetCounter() != nil {
							return m.GetCounter().GetValue()
						}
						return m.GetGauge().GetValue()
					}
				}
			}
		}
		return -1
	}
	// metricIs is a testutil.Eventually condition: metric name of peer is
	// want.
	metricIs := func(name, peer string, want float64) func() (bool, string) {
		return func() (bool, string) {
			got := metric(name, peer)
			return got == want, fmt.Sprintf("%s{peer=%q} = %v", name, peer, got)
		}
	}
	statusOf := func(svc string) (*barelbv1beta1.ServiceBGPStatus, error) {
		var st barelbv1beta1.ServiceBGPStatus
		err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: statusName(nodeName, "default", svc)}, &st)
		return &st, err
	}

	t.Run("a BGPPeer selecting the node opens a session", func(t *testing.T) {
		start := time.Now()
		waitEvent(t, "router", ReasonSessionEstablished, 60*time.Second)
		t.Logf("MEASURED session established (Event) %v after the manager started", time.Since(start).Round(time.Millisecond))
		if st := router.NeighborState(t, "198.51.100.1"); st != "Established" {
			t.Errorf("FRR's neighbour 198.51.100.1 is %q", st)
		}
		testutil.Eventually(t, 10*time.Second, "barelb_speaker_bgp_session_up 1", metricIs("barelb_speaker_bgp_session_up", "router", 1))
	})

	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", Annotations: map[string]string{config.AnnotationAllocatedFromPool: "vips"}},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}},
	}
	t.Run("a Service's address is advertised, with status and metrics", func(t *testing.T) {
		must(c.Create(ctx, svc))
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.7"}}
		start := time.Now()
		must(c.Status().Update(ctx, svc))
		r := router.WaitRoute(t, "ipv4", "203.0.113.7/32", 30*time.Second)
		t.Logf("MEASURED 203.0.113.7/32 in FRR %v after the Service's status update", time.Since(start).Round(time.Millisecond))
		if r.NextHop != "198.51.100.1" || strings.Join(r.Communities, " ") != "64500:7" {
			t.Errorf("route %+v: want next hop 198.51.100.1, community 64500:7", r)
		}
		testutil.Eventually(t, 20*time.Second, "ServiceBGPStatus of web", func() (bool, string) {
			st, err := statusOf("web")
			if err != nil {
				return false, err.Error()
			}
			return st.Status.Node == nodeName && st.Status.ServiceName == "web" && st.Status.ServiceNamespace == "default" &&
				strings.Join(st.Status.Peers, ",") == "router" && st.Labels[LabelNode] == nodeName, fmt.Sprintf("status %+v, labels %v", st.Status, st.Labels)
		})
		testutil.Eventually(t, 10*time.Second, "prefixes_advertised 1", metricIs("barelb_speaker_bgp_prefixes_advertised", "router", 1))
		if n := metric("barelb_speaker_bgp_updates_sent_total", "router"); n < 1 {
			t.Errorf("barelb_speaker_bgp_updates_sent_total{peer=router} = %v, want >= 1", n)
		}
	})

	t.Run("Local traffic: advertised only with a ready endpoint on the node", func(t *testing.T) {
		local := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "local", Namespace: "default", Annotations: map[string]string{config.AnnotationAllocatedFromPool: "vips"}},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}},
				ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal},
		}
		must(c.Create(ctx, local))
		local.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.8"}}
		must(c.Status().Update(ctx, local))
		time.Sleep(3 * time.Second)
		if paths := router.Routes(t, "ipv4", "203.0.113.8/32"); len(paths) != 0 {
			t.Fatalf("a Local Service without endpoints is advertised: %+v", paths)
		}
		ready, other := true, "node-b"
		slice := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "local-1", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "local"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}, NodeName: &other, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		}
		must(c.Create(ctx, slice))
		time.Sleep(3 * time.Second)
		if paths := router.Routes(t, "ipv4", "203.0.113.8/32"); len(paths) != 0 {
			t.Fatalf("a Local Service whose endpoint is on another node is advertised: %+v", paths)
		}
		here := nodeName
		slice.Endpoints[0].NodeName = &here
		must(c.Update(ctx, slice))
		router.WaitRoute(t, "ipv4", "203.0.113.8/32", 30*time.Second)
		must(c.Delete(ctx, slice))
		router.WaitGone(t, "ipv4", "203.0.113.8/32", 30*time.Second)
		must(c.Delete(ctx, local))
	})

	t.Run("deleting the Service withdraws the route and its status", func(t *testing.T) {
		start := time.Now()
		must(c.Delete(ctx, svc))
		router.WaitGone(t, "ipv4", "203.0.113.7/32", 30*time.Second)
		t.Logf("MEASURED 203.0.113.7/32 withdrawn from FRR %v after the Service's deletion", time.Since(start).Round(time.Millisecond))
		testutil.Eventually(t, 20*time.Second, "ServiceBGPStatus of web deleted", func() (bool, string) {
			_, err := statusOf("web")
			return apierrors.IsNotFound(err), fmt.Sprintf("get: %v", err)
		})
		testutil.Eventually(t, 10*time.Second, "prefixes_advertised 0", metricIs("barelb_speaker_bgp_prefixes_advertised", "router", 0))
	})

	t.Run("a missing passwordSecret: BGPPeerInvalid; a wrong password: NotEstablished; the right one: up", func(t *testing.T) {
		must(c.Create(ctx, peer("md5", "198.51.100.3", func(s *barelbv1beta1.BGPPeerSpec) {
			s.PasswordSecret = &barelbv1beta1.SecretRef{Name: "bgp-md5"}
		})))
		ev := waitEvent(t, "md5", ReasonPeerInvalid, 30*time.Second)
		if ev.Type != corev1.EventTypeWarning || !strings.Contains(ev.Message, "bgp-md5") {
			t.Errorf("BGPPeerInvalid Event %s %q: want a Warning naming the Secret", ev.Type, ev.Message)
		}
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "bgp-md5", Namespace: namespace}, Type: corev1.SecretTypeBasicAuth,
			Data: map[string][]byte{corev1.BasicAuthUsernameKey: []byte("x"), corev1.BasicAuthPasswordKey: []byte("wrong")}}
		must(c.Create(ctx, secret))
		ev = waitEvent(t, "md5", ReasonSessionNotEstablished, 60*time.Second)
		if ev.Type != corev1.EventTypeWarning || !strings.Contains(ev.Message, "MD5") || !strings.Contains(ev.Message, "bgp-md5") {
			t.Errorf("BGPSessionNotEstablished Event %s %q: want a Warning saying a TCP MD5 mismatch looks like this, naming the Secret", ev.Type, ev.Message)
		}
		if st := router.NeighborState(t, "198.51.100.3"); st == "Established" {
			t.Fatal("FRR established a session with the wrong password")
		}
		if got := eventsOf("router", ReasonSessionDown); len(got) != 0 {
			t.Errorf("the broken peer disturbed the other: %v", got)
		}
		must(c.Get(ctx, client.ObjectKeyFromObject(secret), secret))
		secret.Data[corev1.BasicAuthPasswordKey] = []byte(md5Secret)
		start := time.Now()
		must(c.Update(ctx, secret))
		waitEvent(t, "md5", ReasonSessionEstablished, 60*time.Second)
		t.Logf("MEASURED session with the fixed Secret established %v after the Secret's update", time.Since(start).Round(time.Millisecond))
		if st := router.NeighborState(t, "198.51.100.3"); st != "Established" {
			t.Errorf("FRR's neighbour 198.51.100.3 is %q", st)
		}
		if n := len(eventsOf("md5", ReasonPeerInvalid)); n != 1 {
			t.Errorf("%d BGPPeerInvalid Events, want 1 (no repeats on resync)", n)
		}
		must(c.Delete(ctx, peer("md5", "", nil)))
	})

	t.Run("BFD down closes the BGP session at once; it reconnects by itself", func(t *testing.T) {
		rx, mult := uint32(100), uint32(3)
		prof := &barelbv1beta1.BFDProfile{ObjectMeta: metav1.ObjectMeta{Name: "fast", Namespace: namespace}}
		prof.Spec = barelbv1beta1.BFDProfileSpec{ReceiveInterval: &rx, TransmitInterval: &rx, DetectMultiplier: &mult}
		must(c.Create(ctx, prof))
		// Hold time 90 s: without BFD, the session would stay up that long.
		must(c.Create(ctx, peer("bfd", "198.51.100.2", func(s *barelbv1beta1.BGPPeerSpec) {
			s.BFDProfile = "fast"
			s.HoldTime = &metav1.Duration{Duration: 90 * time.Second}
		})))
		waitEvent(t, "bfd", ReasonSessionEstablished, 60*time.Second)
		testutil.Eventually(t, 30*time.Second, "barelb_speaker_bfd_session_up 1", metricIs("barelb_speaker_bfd_session_up", "bfd", 1))
		start := time.Now()
		router.Kill("bfdd")
		testutil.Eventually(t, 10*time.Second, "the BGP session with peer bfd down", metricIs("barelb_speaker_bgp_session_up", "bfd", 0))
		t.Logf("MEASURED BGP session down %v after the router's bfdd was killed (BFD 100 ms x 3, hold time 90 s)", time.Since(start).Round(time.Millisecond))
		if metric("barelb_speaker_bfd_session_up", "bfd") != 0 {
			t.Error("barelb_speaker_bfd_session_up{peer=bfd} is not 0")
		}
		ev := waitEvent(t, "bfd", ReasonSessionDown, 20*time.Second)
		if !strings.Contains(ev.Message, "BFD declared the peer down") {
			t.Errorf("BGPSessionDown does not say BFD took it down: %q", ev.Message)
		}
		if metric("barelb_speaker_bgp_session_up", "router") != 1 {
			t.Error("BFD of one peer took another session down")
		}
		// Non-strict: bgpd still runs, so the session returns without BFD.
		testutil.Eventually(t, 60*time.Second, "the BGP session with peer bfd back without BFD", metricIs("barelb_speaker_bgp_session_up", "bfd", 1))
		t.Logf("MEASURED BGP session back (without BFD) %v after bfdd was killed", time.Since(start).Round(time.Millisecond))
		start = time.Now()
		router.Start(t, "bfdd")
		testutil.Eventually(t, 60*time.Second, "BFD up again", metricIs("barelb_speaker_bfd_session_up", "bfd", 1))
		t.Logf("MEASURED BFD up %v after bfdd restarted", time.Since(start).Round(time.Millisecond))
	})

	t.Run("a link flap with BFD: down at once, back by itself", func(t *testing.T) {
		testutil.Eventually(t, 30*time.Second, "barelb_speaker_bfd_session_up 1", metricIs("barelb_speaker_bfd_session_up", "bfd", 1))
		start := time.Now()
		setLink(t, router.Netns, spec.RouterIf, "down")
		t.Cleanup(func() { setLink(t, router.Netns, spec.RouterIf, "up") })
		testutil.Eventually(t, 10*time.Second, "the BGP session with peer bfd down", metricIs("barelb_speaker_bgp_session_up", "bfd", 0))
		t.Logf("MEASURED link down: BGP session down %v after", time.Since(start).Round(time.Millisecond))
		time.Sleep(2 * time.Second)
		start = time.Now()
		setLink(t, router.Netns, spec.RouterIf, "up")
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("FRR's BFD peers:\n%s", router.Vtysh(t, "show bfd peers"))
			}
		})
		testutil.Eventually(t, 60*time.Second, "the BGP session with peer bfd back after the link flap, with BFD", func() (bool, string) {
			bgpUp, bfdUp := metric("barelb_speaker_bgp_session_up", "bfd"), metric("barelb_speaker_bfd_session_up", "bfd")
			return bgpUp == 1 && bfdUp == 1, fmt.Sprintf("BGP session up %v, BFD session up %v", bgpUp, bfdUp)
		})
		t.Logf("MEASURED link up: BGP session back %v after", time.Since(start).Round(time.Millisecond))
	})

	t.Run("stopping closes the sessions and deletes the node's statuses", func(t *testing.T) {
		again := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "again", Namespace: "default", Annotations: map[string]string{config.AnnotationAllocatedFromPool: "vips"}},
			Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}},
		}
		must(c.Create(ctx, again))
		again.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.9"}}
		must(c.Status().Update(ctx, again))
		router.WaitRoute(t, "ipv4", "203.0.113.9/32", 30*time.Second)
		testutil.Eventually(t, 20*time.Second, "ServiceBGPStatus of again", testutil.NoError(func() error { _, err := statusOf("again"); return err }))
		cancel()
		select {
		case err := <-mgrDone:
			if err != nil {
				t.Errorf("manager: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("the manager did not stop")
		}
		for _, n := range []string{"198.51.100.1", "198.51.100.2"} {
			if st := router.NeighborState(t, n); st == "Established" {
				t.Errorf("FRR's neighbour %s still Established after the speaker stopped", n)
			}
		}
		var left barelbv1beta1.ServiceBGPStatusList
		must(c.List(context.Background(), &left, client.InNamespace(namespace)))
		if len(left.Items) != 0 {
			t.Errorf("%d ServiceBGPStatuses left after the speaker stopped", len(left.Items))
		}
	})
}

// startFRR runs zebra, bgpd and bfdd in the router namespace.
func startFRR(t *testing.T, netns, ifName string) *testenv.FRR {
	t.Helper()
	conf := fmt.Sprintf(`frr defaults traditional
hostname router
!
router bgp %d
 bgp router-id %s
 no bgp ebgp-requires-policy
 neighbor 198.51.100.1 remote-as %d
 neighbor 198.51.100.2 remote-as %d
 neighbor 198.51.100.3 remote-as %d
 neighbor 198.51.100.3 password %s
!
bfd
 peer 198.51.100.2 local-address %s interface %s
  receive-interval 100
  transmit-interval 100
 !
!
`, routerASN, routerAddr, nodeASN, nodeASN, nodeASN, md5Secret, routerBFD, ifName)
	return testenv.StartFRR(t, netns, conf, "zebra", "bgpd", "bfdd")
}

// setLink sets an interface of a namespace up or down.
func setLink(t *testing.T, netns, ifName, state string) {
	t.Helper()
	if out, err := exec.Command("ip", "-n", netns, "link", "set", ifName, state).CombinedOutput(); err != nil {
		t.Fatalf("link %s %s: %v %s", ifName, state, err, out)
	}
}
