package announcement

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/k8s/allocation"
	"github.com/barelb/barelb/internal/k8s/heartbeat"
	"github.com/barelb/barelb/internal/k8s/servicecondition"
	"github.com/barelb/barelb/internal/metrics"
	"github.com/barelb/barelb/internal/testenv"
)

const barelbNS = "barelb-system"

// world is a real API server with the controller's allocation and
// announcement reconcilers running in-process. What the speakers report
// (statuses, Leases) is written by the test: the reconciler only reads
// them, and the lab tests (e2etest/layer2) check the real speakers.
type world struct {
	t *testing.T
	c client.Client
	r *Reconciler
}

func start(t *testing.T) *world {
	t.Helper()
	env := testenv.Start(t, testenv.Options{})
	w := &world{t: t, c: env.Client}
	w.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: barelbNS}})
	mgr, err := ctrl.NewManager(env.Config, env.ManagerOptions(zap.New(zap.UseDevMode(true), zap.WriteTo(testWriter{t}))))
	if err != nil {
		t.Fatal(err)
	}
	m, err := metrics.NewController(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := allocation.Setup(mgr, allocation.Options{Namespace: barelbNS, Metrics: m, PoolStatusDelay: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.r, err = Setup(ctx, mgr, Options{Namespace: barelbNS, Delay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (w *world) create(obj client.Object) {
	w.t.Helper()
	if err := w.c.Create(context.Background(), obj); err != nil && !apierrors.IsAlreadyExists(err) {
		w.t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

// node creates a Ready node with labels.
func (w *world) node(name string, lbls map[string]string) {
	w.t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls}}
	w.create(n)
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
	if err := w.c.Status().Update(context.Background(), n); err != nil {
		w.t.Fatal(err)
	}
}

// speaker creates or updates the speaker Lease of a node as a speaker
// writes it; established is nil for a speaker that does not say.
func (w *world) speaker(node string, established []string) {
	w.t.Helper()
	ctx := context.Background()
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: barelbNS, Name: heartbeat.LeaseName(node),
		Labels: map[string]string{heartbeat.LabelComponent: heartbeat.ComponentSpeaker}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(node)}}
	if established != nil {
		l.Annotations = map[string]string{heartbeat.AnnotationBGPEstablished: strings.Join(established, ",")}
	}
	var cur coordinationv1.Lease
	if err := w.c.Get(ctx, client.ObjectKeyFromObject(l), &cur); err == nil {
		cur.Annotations = l.Annotations
		if err := w.c.Update(ctx, &cur); err != nil {
			w.t.Fatal(err)
		}
		return
	}
	w.create(l)
}

func (w *world) service(ns, name string, mutate func(*corev1.Service)) {
	w.t.Helper()
	w.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeLoadBalancer, AllocateLoadBalancerNodePorts: ptr.To(false),
		Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}},
	}}
	if mutate != nil {
		mutate(svc)
	}
	w.create(svc)
}

func (w *world) pool(name, ns string, addrs ...string) {
	p := &barelbv1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Namespace: barelbNS, Name: name, Labels: map[string]string{"pool": name}},
		Spec: barelbv1beta1.IPAddressPoolSpec{ServiceAllocation: &barelbv1beta1.ServiceAllocation{Namespaces: []string{ns}}}}
	for _, a := range addrs {
		p.Spec.Addresses = append(p.Spec.Addresses, barelbv1beta1.AddressRange(a))
	}
	w.create(p)
}

// l2status writes the ServiceL2Status a speaker writes for a Service it
// announces.
func (w *world) l2status(ns, name, node string, addrs ...string) {
	w.t.Helper()
	st := &barelbv1beta1.ServiceL2Status{ObjectMeta: metav1.ObjectMeta{Namespace: barelbNS, Name: "l2-" + ns + "-" + name,
		Labels: map[string]string{barelbv1beta1.LabelServiceName: name, barelbv1beta1.LabelServiceNamespace: ns}}}
	w.create(st)
	st.Status = barelbv1beta1.ServiceL2StatusStatus{Node: node, ServiceName: name, ServiceNamespace: ns, Addresses: addrs,
		Interfaces: []barelbv1beta1.InterfaceInfo{{Name: "eth0"}}}
	if err := w.c.Status().Update(context.Background(), st); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) bgpstatus(ns, name, node string, peers ...string) {
	w.t.Helper()
	st := &barelbv1beta1.ServiceBGPStatus{ObjectMeta: metav1.ObjectMeta{Namespace: barelbNS, Name: "bgp-" + node + "-" + ns + "-" + name,
		Labels: map[string]string{barelbv1beta1.LabelServiceName: name, barelbv1beta1.LabelServiceNamespace: ns}}}
	w.create(st)
	st.Status = barelbv1beta1.ServiceBGPStatusStatus{Node: node, ServiceName: name, ServiceNamespace: ns, Peers: peers}
	if err := w.c.Status().Update(context.Background(), st); err != nil {
		w.t.Fatal(err)
	}
}

// wait waits until the Service's Announced condition has the status and
// reason and its message contains every fragment.
func (w *world) wait(ns, name string, status metav1.ConditionStatus, reason string, fragments ...string) *corev1.Service {
	w.t.Helper()
	var svc corev1.Service
	last := ""
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err := w.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &svc); err != nil {
			last = err.Error()
			continue
		}
		c := servicecondition.Find(&svc, barelbv1beta1.ConditionAnnounced)
		if last = check(c, status, reason, fragments); last == "" {
			return &svc
		}
	}
	w.t.Fatalf("Announced of %s/%s: %s", ns, name, last)
	return nil
}

func check(c *metav1.Condition, status metav1.ConditionStatus, reason string, fragments []string) string {
	if c == nil {
		return "no condition"
	}
	if c.Status != status || c.Reason != reason {
		return fmt.Sprintf("got %s %s %q, want %s %s", c.Status, c.Reason, c.Message, status, reason)
	}
	for _, f := range fragments {
		if !strings.Contains(c.Message, f) {
			return fmt.Sprintf("message %q lacks %q", c.Message, f)
		}
	}
	return ""
}

func TestAnnounced(t *testing.T) {
	w := start(t)
	ctx := context.Background()
	w.node("n1", map[string]string{"zone": "a"})
	w.node("n2", map[string]string{"zone": "b"})
	w.speaker("n1", []string{})
	w.speaker("n2", []string{})

	t.Run("NoAddress", func(t *testing.T) {
		w.t = t
		w.service("ann-noaddr", "web", nil)
		w.wait("ann-noaddr", "web", metav1.ConditionFalse, barelbv1beta1.AnnouncedReasonNoAddress, barelbv1beta1.ConditionAddressAssigned)
	})

	t.Run("NoAdvertisement, then the node that answers once one covers the pool", func(t *testing.T) {
		w.t = t
		w.pool("l2pool", "ann-l2", "203.0.113.0/28")
		w.service("ann-l2", "web", nil)
		w.wait("ann-l2", "web", metav1.ConditionFalse, barelbv1beta1.AnnouncedReasonNoAdvertisement, "pool l2pool")
		w.create(&barelbv1beta1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Namespace: barelbNS, Name: "l2"},
			Spec: barelbv1beta1.L2AdvertisementSpec{IPAddressPools: []string{"l2pool"}, NodeSelectors: []barelbv1beta1.Selector{{MatchLabels: map[string]barelbv1beta1.LabelValue{"zone": "a"}}}}})
		w.wait("ann-l2", "web", metav1.ConditionFalse, barelbv1beta1.AnnouncedReasonPending, "eligible nodes: n1")
		w.l2status("ann-l2", "web", "n1", "203.0.113.0")
		w.wait("ann-l2", "web", metav1.ConditionTrue, barelbv1beta1.AnnouncedReasonLayer2, "node n1 answers ARP/NDP for 203.0.113.0 on eth0")
		// A failover: the new node's speaker rewrites the status.
		var st barelbv1beta1.ServiceL2Status
		if err := w.c.Get(ctx, client.ObjectKey{Namespace: barelbNS, Name: "l2-ann-l2-web"}, &st); err != nil {
			t.Fatal(err)
		}
		st.Status.Node = "n2"
		if err := w.c.Status().Update(ctx, &st); err != nil {
			t.Fatal(err)
		}
		w.wait("ann-l2", "web", metav1.ConditionTrue, barelbv1beta1.AnnouncedReasonLayer2, "node n2 answers")
	})

	t.Run("NoEligibleNode", func(t *testing.T) {
		w.t = t
		w.pool("nonode", "ann-nonode", "203.0.113.16/28")
		w.create(&barelbv1beta1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Namespace: barelbNS, Name: "nonode"},
			Spec: barelbv1beta1.L2AdvertisementSpec{IPAddressPools: []string{"nonode"}, NodeSelectors: []barelbv1beta1.Selector{{MatchLabels: map[string]barelbv1beta1.LabelValue{"zone": "nowhere"}}}}})
		w.service("ann-nonode", "web", nil)
		w.wait("ann-nonode", "web", metav1.ConditionFalse, barelbv1beta1.AnnouncedReasonNoEligibleNode, "L2Advertisement nonode")
		// A node joins the zone: it becomes eligible.
		w.node("n3", map[string]string{"zone": "nowhere"})
		w.wait("ann-nonode", "web", metav1.ConditionFalse, barelbv1beta1.AnnouncedReasonNoEligibleNode)
		w.speaker("n3", []string{})
		w.wait("ann-nonode", "web", metav1.ConditionFalse, barelbv1beta1.AnnouncedReasonPending, "eligible nodes: n3")
	})

	t.Run("NoReadyEndpoint for a Local Service", func(t *testing.T) {
		w.t = t
		w.pool("local", "ann-local", "203.0.113.32/28")
		w.create(&barelbv1beta1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Namespace: barelbNS, Name: "local"},
			Spec: barelbv1beta1.L2AdvertisementSpec{IPAddressPools: []string{"local"}}})
		w.service("ann-local", "web", func(s *corev1.Service) {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		})
		w.wait("ann-local", "web", metav1.ConditionFalse, barelbv1beta1.AnnouncedReasonNoReadyEndpoint, "externalTrafficPolicy is Local")
		w.create(&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "ann-local", Name: "web-1",
			Labels: map[string]string{discoveryv1.LabelServiceName: "web"}}, AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.1"}, NodeName: ptr.To("n2"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}}})
		w.wait("ann-local", "web", metav1.ConditionFalse, barelbv1beta1.AnnouncedReasonPending)
	})

	t.Run("NoCommonEndpoint for Local Services sharing an address", func(t *testing.T) {
		w.t = t
		w.pool("shared", "ann-shared", "203.0.113.40/32")
		w.create(&barelbv1beta1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Namespace: barelbNS, Name: "shared"},
			Spec: barelbv1beta1.L2AdvertisementSpec{IPAddressPools: []string{"shared"}}})
		local := func(port int32) func(*corev1.Service) {
			return func(s *corev1.Service) {
				s.Annotations = map[string]string{"barelb.io/allow-shared-ip": "web"}
				s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
				s.Spec.Ports[0].Port = port
			}
		}
		slice := func(svc, name, node string) {
			w.create(&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "ann-shared", Name: name,
				Labels: map[string]string{discoveryv1.LabelServiceName: svc}}, AddressType: discoveryv1.AddressTypeIPv4,
				Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.9"}, NodeName: ptr.To(node), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}}})
		}
		w.service("ann-shared", "http", local(80))
		w.service("ann-shared", "https", local(443))
		slice("http", "http-1", "n1")
		slice("https", "https-1", "n2")
		// Each has a ready endpoint, on different nodes: no node may
		// announce the address they share.
		w.wait("ann-shared", "http", metav1.ConditionFalse, barelbv1beta1.AnnouncedReasonNoCommonEndpoint, "shared with ann-shared/https", "none of the eligible nodes")
		w.wait("ann-shared", "https", metav1.ConditionFalse, barelbv1beta1.AnnouncedReasonNoCommonEndpoint, "shared with ann-shared/http")
		// An endpoint of https on n1 makes n1 a node for both: the
		// change to one Service's endpoints reaches the other's verdict.
		slice("https", "https-2", "n1")
		w.wait("ann-shared", "http", metav1.ConditionFalse, barelbv1beta1.AnnouncedReasonPending, "no speaker reports answering")
		w.wait("ann-shared", "https", metav1.ConditionFalse, barelbv1beta1.AnnouncedReasonPending)
	})

	t.Run("BGP: NoBGPPeer, NoBGPSessionUp, then advertised", func(t *testing.T) {
		w.t = t
		w.pool("bgppool", "ann-bgp", "203.0.113.48/28")
		w.create(&barelbv1beta1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Namespace: barelbNS, Name: "bgp"},
			Spec: barelbv1beta1.BGPAdvertisementSpec{IPAddressPools: []string{"bgppool"}}})
		w.service("ann-bgp", "web", nil)
		w.wait("ann-bgp", "web", metav1.ConditionFalse, barelbv1beta1.AnnouncedReasonNoBGPPeer, "BGPAdvertisement bgp")
		w.create(&barelbv1beta1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Namespace: barelbNS, Name: "r1"},
			Spec: barelbv1beta1.BGPPeerSpec{MyASN: 64500, PeerASN: 64501, PeerAddress: "198.51.100.254"}})
		w.wait("ann-bgp", "web", metav1.ConditionFalse, barelbv1beta1.AnnouncedReasonNoBGPSessionUp, "r1 (from n1)")
		w.bgpstatus("ann-bgp", "web", "n1", "r1")
		w.wait("ann-bgp", "web", metav1.ConditionFalse, barelbv1beta1.AnnouncedReasonNoBGPSessionUp, "advertised to r1 (from n1), but no session is established")
		w.speaker("n1", []string{"r1"})
		w.wait("ann-bgp", "web", metav1.ConditionTrue, barelbv1beta1.AnnouncedReasonBGP, "advertised to r1 by node n1")
		// The session drops: one Lease write says so for every Service.
		w.speaker("n1", []string{})
		w.wait("ann-bgp", "web", metav1.ConditionFalse, barelbv1beta1.AnnouncedReasonNoBGPSessionUp)
	})

	t.Run("the condition is written only on change, and another writer's condition stays", func(t *testing.T) {
		w.t = t
		svc := w.wait("ann-l2", "web", metav1.ConditionTrue, barelbv1beta1.AnnouncedReasonLayer2, "node n2")
		mine := servicecondition.Want{Status: metav1.ConditionTrue, Reason: "Mine", Message: "a third writer"}
		if _, err := servicecondition.Write(ctx, w.c, svc, "example.com/Mine", &mine, time.Now()); err != nil {
			t.Fatal(err)
		}
		before := w.r.Writes.Load()
		// Something the verdict reads changes without changing it: a
		// label on a node.
		var n corev1.Node
		if err := w.c.Get(ctx, client.ObjectKey{Name: "n2"}, &n); err != nil {
			t.Fatal(err)
		}
		n.Labels["touched"] = "yes"
		if err := w.c.Update(ctx, &n); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		if got := w.r.Writes.Load() - before; got != 0 {
			t.Errorf("%d condition writes after a change that changes no verdict, want 0", got)
		}
		svc = w.wait("ann-l2", "web", metav1.ConditionTrue, barelbv1beta1.AnnouncedReasonLayer2, "node n2")
		for _, typ := range []string{"example.com/Mine", barelbv1beta1.ConditionAddressAssigned} {
			if servicecondition.Find(svc, typ) == nil {
				t.Errorf("condition %s gone: %+v", typ, svc.Status.Conditions)
			}
		}
		if len(svc.Status.LoadBalancer.Ingress) != 1 {
			t.Errorf("status.loadBalancer touched: %+v", svc.Status.LoadBalancer)
		}
	})

	t.Run("a Service barelb stops serving loses the condition", func(t *testing.T) {
		w.t = t
		var svc corev1.Service
		if err := w.c.Get(ctx, client.ObjectKey{Namespace: "ann-noaddr", Name: "web"}, &svc); err != nil {
			t.Fatal(err)
		}
		svc.Spec.LoadBalancerClass = nil
		svc.Spec.Type = corev1.ServiceTypeClusterIP
		svc.Spec.AllocateLoadBalancerNodePorts = nil
		if err := w.c.Update(ctx, &svc); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if err := w.c.Get(ctx, client.ObjectKeyFromObject(&svc), &svc); err != nil {
				t.Fatal(err)
			}
			if servicecondition.Find(&svc, barelbv1beta1.ConditionAnnounced) == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("condition still there: %+v", svc.Status.Conditions)
			}
		}
	})
}
