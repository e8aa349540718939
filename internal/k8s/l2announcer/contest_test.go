package l2announcer

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
	"github.com/barelb/barelb/internal/election"
	"github.com/barelb/barelb/internal/layer2"
	"github.com/barelb/barelb/internal/metrics"
	"github.com/barelb/barelb/internal/testenv"
)

// TestContestedAddresses: a speaker that memberlist has lost (the client
// of the link, by its MAC) claims two addresses this node announces. The
// one it wins the arbitration for is yielded (not answered, no
// ServiceL2Status) until it goes quiet; the other is kept and announced
// again. Both sides are told (Events on the Node and the Services), and
// a Normal Event follows once memberlist sees the speaker again. A claim
// by a speaker that left (its hand-over) changes nothing.
func TestContestedAddresses(t *testing.T) {
	vipYield, vipKeep := netip.MustParseAddr("198.51.100.200"), netip.MustParseAddr("198.51.100.201")
	other := ""
	for i := 2; other == ""; i++ {
		name := fmt.Sprintf("n%d", i)
		if election.Arbitrate(vipYield.String(), "n1", name) == name && election.Arbitrate(vipKeep.String(), "n1", name) == "n1" {
			other = name
		}
	}
	link := testenv.NewLink(t)
	env, ctx, must := startAPI(t)
	c := env.Client
	for _, name := range []string{"n1", other} {
		readyNode(ctx, must, c, name, nil)
	}
	pool := &barelbv1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: "lan", Namespace: namespace}}
	pool.Spec.Addresses = []barelbv1beta1.AddressRange{"198.51.100.200-198.51.100.210"}
	must(c.Create(ctx, pool))
	must(c.Create(ctx, &barelbv1beta1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "lan", Namespace: namespace}}))
	for name, vip := range map[string]netip.Addr{"yield": vipYield, "keep": vipKeep} {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Annotations: map[string]string{config.AnnotationAllocatedFromPool: "lan"}},
			Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}},
		}
		must(c.Create(ctx, svc))
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: vip.String()}}
		must(c.Status().Update(ctx, svc))
	}

	m := &members{}
	m.set("n1")
	changes := make(chan event.GenericEvent, 1)
	mgr, err := ctrl.NewManager(env.Config, env.ManagerOptions(testr.New(t)))
	must(err)
	clientMAC, _ := net.ParseMAC(testenv.ClientMAC)
	network := &linkNetwork{t: t, ctx: ctx, link: link, opts: layer2.Options{
		Speaker: func(mac net.HardwareAddr) (string, bool) { return other, mac.String() == clientMAC.String() }}}
	r := &Reconciler{
		Client: mgr.GetClient(), Recorder: mgr.GetEventRecorderFor("barelb-speaker"), Log: testr.New(t),
		Node: "n1", Namespace: namespace, Members: m, Network: network,
	}
	speakerMetrics, err := metrics.NewSpeaker(prometheus.NewRegistry(), nil)
	must(err)
	r.Observer = &Observer{Recorder: r.Recorder, Log: r.Log, Node: r.Node, Metrics: speakerMetrics, Interfaces: network.Interfaces}
	must(Setup(mgr, r, changes))
	testenv.Run(t, ctx, mgr.Start)

	statusNode := func(svc string) string {
		var s barelbv1beta1.ServiceL2Status
		if err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: statusName("default", svc)}, &s); err != nil {
			return ""
		}
		return s.Status.Node
	}
	events := func(kind, name, reason string) []corev1.Event {
		var list corev1.EventList
		_ = c.List(ctx, &list, client.InNamespace("default"))
		var out []corev1.Event
		for _, e := range list.Items {
			if e.Reason == reason && e.InvolvedObject.Kind == kind && e.InvolvedObject.Name == name {
				out = append(out, e)
			}
		}
		return out
	}
	waitFor := func(t *testing.T, what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	resp := func() Responder {
		resp, err := network.Responder(ctx, link.SpeakerIf, r)
		must(err)
		return resp
	}
	waitFor(t, "both addresses announced by n1", func() bool { return statusNode("yield") == "n1" && statusNode("keep") == "n1" })

	t.Run("a speaker that left is not contested during its hand-over, but is after it if it still answers", func(t *testing.T) {
		contested := func() bool {
			r.contests.mu.Lock()
			defer r.contests.mu.Unlock()
			return r.contests.peers[other] != nil
		}
		m.setLeft(other, true)
		defer m.setLeft(other, false)
		link.ClientClaims(vipYield)
		time.Sleep(500 * time.Millisecond)
		if !resp().Owns(vipYield) || contested() {
			t.Fatal("yielded an address to (or contested) a speaker that left memberlist on purpose")
		}
		// Its hand-over is over, and it still answers (back where
		// memberlist here cannot hear it): the link, asked again, says
		// so, and the address is settled.
		link.Run("ip", "-n", link.Client, "addr", "add", vipYield.String()+"/24", "dev", link.ClientIf)
		m.setLeft(other, false)
		waitFor(t, "a speaker answering past its hand-over contested", contested)
		link.Run("ip", "-n", link.Client, "addr", "del", vipYield.String()+"/24", "dev", link.ClientIf)
		waitFor(t, "the address answered again once it stopped", func() bool { return resp().Owns(vipYield) })
	})

	t.Run("a speaker memberlist lists again is not contested before the plan counts it", func(t *testing.T) {
		contested := func() bool {
			r.contests.mu.Lock()
			defer r.contests.mu.Unlock()
			return r.contests.peers[other] != nil
		}
		// It restarted: memberlist lists it again, and it announces
		// what it is elected for before this node has planned with it
		// (no change event yet: the plan here still lacks it).
		yields := func() float64 { return testutil.ToFloat64(speakerMetrics.AddressContests.WithLabelValues("yielded")) }
		before := yields()
		m.set("n1", other)
		link.ClientClaims(vipYield)
		time.Sleep(300 * time.Millisecond)
		if contested() || yields() != before {
			t.Fatalf("a restarted speaker's first claim was contested (%v) or yielded to (%v times) as if memberlist had lost it", contested(), yields()-before)
		}
		m.set("n1")
		changes <- event.GenericEvent{Object: &corev1.Node{}}
		waitFor(t, "n1 answering both again", func() bool { return resp().Owns(vipYield) && resp().Owns(vipKeep) })
	})

	t.Run("a claim heard while the speaker was listed: settled once memberlist loses it, if it still answers", func(t *testing.T) {
		contested := func() bool {
			r.contests.mu.Lock()
			defer r.contests.mu.Unlock()
			return r.contests.peers[other] != nil
		}
		// The other speaker is a member, but excluded: n1 keeps both
		// addresses, with the other listed.
		var node corev1.Node
		must(c.Get(ctx, client.ObjectKey{Name: other}, &node))
		node.Labels = map[string]string{ExcludeLabel: ""}
		must(c.Update(ctx, &node))
		defer func() {
			must(c.Get(ctx, client.ObjectKey{Name: other}, &node))
			node.Labels = nil
			must(c.Update(ctx, &node))
		}()
		m.set("n1", other)
		changes <- event.GenericEvent{Object: &corev1.Node{}}
		time.Sleep(500 * time.Millisecond)
		// Its take-over of both, heard before memberlist here notices
		// anything.
		link.ClientClaims(vipYield)
		link.ClientClaims(vipKeep)
		time.Sleep(300 * time.Millisecond)
		if contested() {
			t.Fatal("a claim by a listed speaker was contested at once")
		}
		// It died: memberlist loses it, nothing answers the link.
		m.set("n1")
		changes <- event.GenericEvent{Object: &corev1.Node{}}
		time.Sleep(time.Second)
		if contested() || resp().Yielded(vipYield) || !resp().Owns(vipYield) {
			t.Fatalf("a dead speaker's old claim was contested (%v) or yielded to (%v)", contested(), resp().Yielded(vipYield))
		}
		// Cut off instead: it still answers (the client's kernel, with
		// the address), and that answer is contested.
		m.set("n1", other)
		changes <- event.GenericEvent{Object: &corev1.Node{}}
		time.Sleep(500 * time.Millisecond)
		link.ClientClaims(vipKeep)
		link.Run("ip", "-n", link.Client, "addr", "add", vipKeep.String()+"/24", "dev", link.ClientIf)
		defer link.Run("ip", "-n", link.Client, "addr", "del", vipKeep.String()+"/24", "dev", link.ClientIf)
		m.set("n1")
		changes <- event.GenericEvent{Object: &corev1.Node{}}
		waitFor(t, "the remembered claim contested once memberlist lost the speaker, which still answers", contested)
		if !resp().Owns(vipKeep) {
			t.Error("n1, which wins the arbitration, stopped answering")
		}
	})

	// The other speaker answers for both: a claim every 50 ms.
	stop := make(chan struct{})
	claiming := make(chan struct{})
	go func() {
		defer close(claiming)
		for {
			link.ClientClaims(vipYield)
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	link.ClientClaims(vipKeep)

	t.Run("the arbitration's loser stops answering, the winner goes on", func(t *testing.T) {
		waitFor(t, "the address the other speaker wins yielded", func() bool { return resp().Yielded(vipYield) })
		waitFor(t, "no ServiceL2Status naming n1 for the yielded address", func() bool { return statusNode("yield") != "n1" })
		// What the node answers for, not what it yielded.
		waitFor(t, "barelb_speaker_addresses_announced 1", func() bool { return testutil.ToFloat64(speakerMetrics.AddressesAnnounced) == 1 })
		if !resp().Owns(vipKeep) {
			t.Error("the address n1 wins is no longer answered")
		}
		link.FlushNeighbour(vipKeep)
		link.Touch(vipKeep)
		link.WaitNeighbour(t, vipKeep, "n1's MAC", testenv.ReachableAt(link.SpeakerMAC))
		if statusNode("keep") != "n1" {
			t.Errorf("ServiceL2Status of the kept address names %q", statusNode("keep"))
		}
	})

	t.Run("said out loud, once", func(t *testing.T) {
		waitFor(t, "a SpeakerPartition Event on the Node", func() bool { return len(events("Node", "n1", ReasonSpeakerPartition)) > 0 })
		e := events("Node", "n1", ReasonSpeakerPartition)[0]
		t.Logf("Node Event: %s", e.Message)
		for _, want := range []string{other, "memberlist"} {
			if !strings.Contains(e.Message, want) {
				t.Errorf("Node Event does not say %q: %s", want, e.Message)
			}
		}
		for svc, keeper := range map[string]string{"yield": other, "keep": "n1"} {
			waitFor(t, "a SpeakerPartition Event on Service "+svc, func() bool { return len(events("Service", svc, ReasonSpeakerPartition)) > 0 })
			if e := events("Service", svc, ReasonSpeakerPartition)[0]; !strings.Contains(e.Message, fmt.Sprintf("node %q keeps it", keeper)) {
				t.Errorf("Service %s: Event does not say that %s keeps the address: %s", svc, keeper, e.Message)
			}
		}
		// The other speaker goes on claiming: nothing more is said.
		before := events("Node", "n1", ReasonSpeakerPartition)
		time.Sleep(time.Second)
		if after := events("Node", "n1", ReasonSpeakerPartition); len(after) != len(before) || after[len(after)-1].Count != before[len(before)-1].Count {
			t.Errorf("SpeakerPartition Events on the Node went on while the partition lasted: %d, then %d", len(before), len(after))
		}
	})

	t.Run("the yielded address is taken over once the other speaker stops", func(t *testing.T) {
		close(stop)
		<-claiming
		start := time.Now()
		waitFor(t, "the yielded address answered again", func() bool { return resp().Owns(vipYield) })
		t.Logf("answered again %v after the other speaker's last claim", time.Since(start).Round(time.Millisecond))
		waitFor(t, "ServiceL2Status naming n1 again", func() bool { return statusNode("yield") == "n1" })
		waitFor(t, "barelb_speaker_addresses_announced 2", func() bool { return testutil.ToFloat64(speakerMetrics.AddressesAnnounced) == 2 })
	})

	t.Run("healed: a Normal Event once memberlist sees the speaker again", func(t *testing.T) {
		m.set("n1", other)
		changes <- event.GenericEvent{Object: &corev1.Node{}}
		waitFor(t, "a SpeakerPartitionHealed Event", func() bool { return len(events("Node", "n1", ReasonSpeakerPartitionHealed)) > 0 })
		t.Logf("Node Event: %s", events("Node", "n1", ReasonSpeakerPartitionHealed)[0].Message)
	})

	t.Run("two listed speakers that go on answering for one address are settled after a grace", func(t *testing.T) {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for {
				link.ClientClaims(vipKeep)
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		}()
		time.Sleep(inViewGrace / 2)
		r.contests.mu.Lock()
		early := r.contests.peers[other] != nil
		r.contests.mu.Unlock()
		if early {
			t.Fatal("a listed speaker's claim was contested before the grace ran out")
		}
		waitFor(t, "the clash contested", func() bool {
			r.contests.mu.Lock()
			defer r.contests.mu.Unlock()
			p := r.contests.peers[other]
			return p != nil && p.listed && p.addresses[vipKeep]
		})
		if !resp().Owns(vipKeep) {
			t.Error("n1, which wins the arbitration, stopped answering")
		}
	})
}
