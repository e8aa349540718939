package l2announcer

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
	"github.com/barelb/barelb/internal/layer2"
	"github.com/barelb/barelb/internal/testenv"
)

const namespace = "barelb-system"

// members is a membership the test sets by hand.
type members struct {
	mu    sync.Mutex
	alive map[string]bool
	left  map[string]bool
}

func (m *members) Alive() (map[string]bool, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]bool{}
	for k, v := range m.alive {
		out[k] = v
	}
	return out, true
}

func (m *members) Left(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.left[name]
}

func (m *members) setLeft(name string, left bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.left == nil {
		m.left = map[string]bool{}
	}
	m.left[name] = left
}

func (m *members) set(names ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.alive = map[string]bool{}
	for _, n := range names {
		m.alive[n] = true
	}
}

// linkNetwork is the speaker side of a test link.
type linkNetwork struct {
	t    *testing.T
	ctx  context.Context
	link *testenv.Link
	mu   sync.Mutex
	resp *layer2.Responder
	opts layer2.Options // but the handlers: those of the Reporter
}

func (n *linkNetwork) Interfaces() ([]layer2.Interface, error) {
	return []layer2.Interface{{Name: n.link.SpeakerIf, Up: true, Prefixes: []netip.Prefix{
		netip.MustParsePrefix("198.51.100.1/24"), netip.MustParsePrefix("2001:db8:100::1/64"),
	}}}, nil
}

func (n *linkNetwork) Responder(_ context.Context, name string, report Reporter) (Responder, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.resp != nil {
		return n.resp, nil
	}
	err := n.link.InSpeaker(func() error {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return err
		}
		n.resp, err = layer2.NewResponder(ifi, testr.New(n.t), reportingTo(n.opts, report))
		return err
	})
	if err != nil {
		return nil, err
	}
	go func() { _ = n.resp.Run(n.ctx) }()
	return n.resp, nil
}

func TestAnnouncer(t *testing.T) {
	link := testenv.NewLink(t)
	env, ctx, must := startAPI(t)
	c := env.Client
	vip4, vip6 := netip.MustParseAddr("198.51.100.200"), netip.MustParseAddr("2001:db8:100::200")

	for _, n := range []struct{ name, zone string }{{"n1", "a"}, {"n2", "b"}} {
		readyNode(ctx, must, c, n.name, map[string]string{"zone": n.zone})
	}
	pool := &barelbv1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: "lan", Namespace: namespace}}
	pool.Spec.Addresses = []barelbv1beta1.AddressRange{"198.51.100.200-198.51.100.210", "2001:db8:100::200-2001:db8:100::210"}
	must(c.Create(ctx, pool))
	adv := &barelbv1beta1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "lan", Namespace: namespace}}
	adv.Spec.IPAddressPools = []string{"lan"}
	must(c.Create(ctx, adv))
	dual := corev1.IPFamilyPolicyPreferDualStack
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", Annotations: map[string]string{config.AnnotationAllocatedFromPool: "lan"}},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, IPFamilyPolicy: &dual, Ports: []corev1.ServicePort{{Port: 80}}},
	}
	must(c.Create(ctx, svc))
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: vip4.String()}, {IP: vip6.String()}}
	must(c.Status().Update(ctx, svc))

	m := &members{}
	m.set("n1")
	changes := make(chan event.GenericEvent, 1)
	replan := func() { changes <- event.GenericEvent{Object: &corev1.Node{}} }
	mgr, err := ctrl.NewManager(env.Config, env.ManagerOptions(testr.New(t)))
	must(err)
	network := &linkNetwork{t: t, ctx: ctx, link: link, opts: layer2.Options{ReprobeInterval: 300 * time.Millisecond}}
	r := &Reconciler{
		Client: mgr.GetClient(), Recorder: mgr.GetEventRecorderFor("barelb-speaker"), Log: testr.New(t),
		Node: "n1", Namespace: namespace, Members: m, Network: network,
	}
	must(Setup(mgr, r, changes))
	testenv.Run(t, ctx, mgr.Start)

	ours, reachable := testenv.ResolvesTo(link.SpeakerMAC), testenv.ReachableAt(link.SpeakerMAC)
	statusOfService := func(name string) (*barelbv1beta1.ServiceL2Status, error) {
		var s barelbv1beta1.ServiceL2Status
		err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: statusName("default", name)}, &s)
		return &s, err
	}
	statusOf := func() (*barelbv1beta1.ServiceL2Status, error) { return statusOfService("web") }
	eventsOf := func(name, reason string) []corev1.Event {
		var events corev1.EventList
		_ = c.List(ctx, &events, client.InNamespace("default"))
		var out []corev1.Event
		for _, e := range events.Items {
			if e.Reason == reason && e.InvolvedObject.Name == name {
				out = append(out, e)
			}
		}
		return out
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	t.Run("the only live node announces both addresses and says so", func(t *testing.T) {
		for _, vip := range []netip.Addr{vip4, vip6} {
			link.Touch(vip)
			link.WaitNeighbour(t, vip, "our MAC", reachable)
		}
		waitFor("ServiceL2Status naming n1", func() bool {
			s, err := statusOf()
			return err == nil && s.Status.Node == "n1" && len(s.Status.Interfaces) == 1 && s.Status.Interfaces[0].Name == link.SpeakerIf
		})
		waitFor("a nodeAssigned Event", func() bool {
			var events corev1.EventList
			_ = c.List(ctx, &events, client.InNamespace("default"))
			for _, e := range events.Items {
				if e.Reason == ReasonAnnounced && e.InvolvedObject.Name == "web" {
					return true
				}
			}
			return false
		})
	})

	// n2 joins and is preferred: a speaker that was not alive in the last
	// plan is answered on for until it is heard announcing, at most
	// releaseOverlap (this n2 is not real and never announces), and no
	// longer.
	t.Run("losing to a preferred node that joins withdraws after the hand-over", func(t *testing.T) {
		must(c.Get(ctx, client.ObjectKeyFromObject(adv), adv))
		adv.Spec.PreferredNodeSelectors = []barelbv1beta1.WeightedNodeSelector{{Weight: 50, Preference: barelbv1beta1.Selector{MatchLabels: map[string]barelbv1beta1.LabelValue{"zone": "b"}}}}
		must(c.Update(ctx, adv))
		m.set("n1", "n2")
		replan()
		waitFor("ServiceL2Status removed", func() bool { _, err := statusOf(); return err != nil })
		for _, vip := range []netip.Addr{vip4, vip6} {
			link.FlushNeighbour(vip)
			link.Touch(vip)
			link.WaitNeighbour(t, vip, "our MAC during the hand-over", reachable)
		}
		time.Sleep(releaseOverlap + 500*time.Millisecond)
		for _, vip := range []netip.Addr{vip4, vip6} {
			link.FlushNeighbour(vip)
			link.Touch(vip)
		}
		time.Sleep(1500 * time.Millisecond)
		for _, vip := range []netip.Addr{vip4, vip6} {
			if entry := link.Neighbour(vip); ours(entry) {
				t.Errorf("client still resolves %s to n1: %q", vip, entry)
			}
		}
	})

	t.Run("taking over when the preferred node dies tells the LAN at once", func(t *testing.T) {
		for _, vip := range []netip.Addr{vip4, vip6} {
			link.SetNeighbour(vip, "02:00:00:00:00:99", "reachable") // n2's MAC, say
		}
		m.set("n1")
		replan()
		for _, vip := range []netip.Addr{vip4, vip6} {
			link.WaitNeighbour(t, vip, "our MAC after the gratuitous announcement", ours)
		}
		waitFor("ServiceL2Status naming n1 again", func() bool { s, err := statusOf(); return err == nil && s.Status.Node == "n1" })
	})

	t.Run("an address another host uses is not announced until it is free", func(t *testing.T) {
		taken := netip.MustParseAddr("198.51.100.201")
		link.Run("ip", "-n", link.Client, "addr", "add", taken.String()+"/24", "dev", link.ClientIf)
		other := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "taken", Namespace: "default", Annotations: map[string]string{config.AnnotationAllocatedFromPool: "lan"}},
			Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}},
		}
		must(c.Create(ctx, other))
		other.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: taken.String()}}
		must(c.Status().Update(ctx, other))
		waitFor("an AddressConflict Event", func() bool { return len(eventsOf("taken", ReasonAddressConflict)) > 0 })
		e := eventsOf("taken", ReasonAddressConflict)[0]
		t.Logf("Event: %s %s: %s", e.Type, e.Reason, e.Message)
		if e.Type != corev1.EventTypeWarning || !strings.Contains(e.Message, "02:00:00:00:00:64") || !strings.Contains(e.Message, link.SpeakerIf) {
			t.Errorf("Event does not name the client's MAC and the interface: %s", e.Message)
		}
		// Plans go on (a replan on every re-probe would be one per
		// 300 ms here); the conflict is told once.
		replan()
		time.Sleep(time.Second)
		if _, err := statusOfService("taken"); err == nil {
			t.Error("ServiceL2Status written for an address in conflict")
		}
		if n := len(eventsOf("taken", ReasonAddressConflict)); n != 1 || eventsOf("taken", ReasonAddressConflict)[0].Count != 1 {
			t.Errorf("%d AddressConflict Events (count %d), want one", n, eventsOf("taken", ReasonAddressConflict)[0].Count)
		}
		if len(eventsOf("taken", ReasonAnnounced)) != 0 {
			t.Error("a nodeAssigned Event for an address in conflict")
		}

		link.Run("ip", "-n", link.Client, "addr", "del", taken.String()+"/24", "dev", link.ClientIf)
		waitFor("ServiceL2Status of the freed address naming n1", func() bool {
			s, err := statusOfService("taken")
			return err == nil && s.Status.Node == "n1"
		})
		waitFor("a nodeAssigned Event", func() bool { return len(eventsOf("taken", ReasonAnnounced)) > 0 })
		link.Touch(taken)
		link.WaitNeighbour(t, taken, "our MAC", reachable)
	})

	// The speaker writes a status only where the one it finds differs;
	// these prove that what it finds is what is there, whoever wrote it.
	// Each step waits until the speaker's cache has seen the change
	// before asking for a plan, as the speaker would see it at its next
	// event.
	cached := func(what string, ok func(s *barelbv1beta1.ServiceL2Status, err error) bool) {
		t.Helper()
		waitFor(what+" in the speaker's cache", func() bool {
			var s barelbv1beta1.ServiceL2Status
			err := mgr.GetClient().Get(ctx, types.NamespacedName{Namespace: namespace, Name: statusName("default", "web")}, &s)
			return ok(&s, err)
		})
	}
	namesN1 := func() bool {
		s, err := statusOf()
		return err == nil && s.Status.Node == "n1" && len(s.Status.Addresses) == 2
	}

	t.Run("a status someone else rewrote is written again", func(t *testing.T) {
		s, err := statusOf()
		must(err)
		s.Status.Node, s.Status.Addresses = "n2", []string{"198.51.100.99"}
		must(c.Status().Update(ctx, s))
		cached("the foreign status", func(s *barelbv1beta1.ServiceL2Status, err error) bool { return err == nil && s.Status.Node == "n2" })
		// No replan: the status writer's recheck finds it (as after a
		// stale request that a frozen API server ran on its return).
		waitFor("ServiceL2Status naming n1 again", namesN1)
	})

	t.Run("a status someone else deleted is written again", func(t *testing.T) {
		s, err := statusOf()
		must(err)
		// No replan: the deletion itself makes the announcer look again
		// (a node that lost the Service late deletes what the winner
		// wrote).
		must(c.Delete(ctx, s))
		waitFor("ServiceL2Status recreated naming n1", func() bool {
			again, err := statusOf()
			return err == nil && again.UID != s.UID && namesN1()
		})
	})

	t.Run("after a take-over and return the other node's status is rewritten", func(t *testing.T) {
		m.set("n1", "n2") // the preferred n2 is back: n1 withdraws and drops its status
		replan()
		waitFor("ServiceL2Status removed", func() bool { _, err := statusOf(); return apierrors.IsNotFound(err) })
		theirs := &barelbv1beta1.ServiceL2Status{ObjectMeta: metav1.ObjectMeta{
			Name: statusName("default", "web"), Namespace: namespace,
			Labels: map[string]string{barelbv1beta1.LabelServiceName: "web", barelbv1beta1.LabelServiceNamespace: "default"},
		}}
		must(c.Create(ctx, theirs)) // n2 announces and says so
		theirs.Status = barelbv1beta1.ServiceL2StatusStatus{Node: "n2", ServiceName: "web", ServiceNamespace: "default",
			Addresses: []string{vip4.String(), vip6.String()}, Interfaces: []barelbv1beta1.InterfaceInfo{{Name: "eth0"}}}
		must(c.Status().Update(ctx, theirs))
		cached("n2's status", func(s *barelbv1beta1.ServiceL2Status, err error) bool { return err == nil && s.Status.Node == "n2" })
		m.set("n1") // n2 dies: n1 takes the Service back
		replan()
		waitFor("ServiceL2Status naming n1 again", namesN1)
	})
}
