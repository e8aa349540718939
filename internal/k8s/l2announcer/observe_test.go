package l2announcer

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/barelb/barelb/internal/election"
	"github.com/barelb/barelb/internal/k8s/servicecache"
	"github.com/barelb/barelb/internal/layer2"
	"github.com/barelb/barelb/internal/membership"
	"github.com/barelb/barelb/internal/metrics"
	"github.com/barelb/barelb/internal/testenv"
)

// observeEnv is a real API server with a Node n1, a Service default/web
// and an Event recorder, shared by the observability tests.
type observeEnv struct {
	c   client.Client
	mgr ctrl.Manager
	svc *corev1.Service
	reg *prometheus.Registry
	m   *metrics.Speaker
}

func startObserveEnv(t *testing.T) *observeEnv {
	t.Helper()
	env := testenv.Start(t, testenv.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := &observeEnv{c: env.Client, reg: prometheus.NewRegistry()}
	if err := e.c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}); err != nil {
		t.Fatal(err)
	}
	e.svc = &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}},
	}
	if err := e.c.Create(ctx, e.svc); err != nil {
		t.Fatal(err)
	}
	var err error
	if e.m, err = metrics.NewSpeaker(e.reg, nil); err != nil {
		t.Fatal(err)
	}
	e.mgr, err = ctrl.NewManager(env.Config, env.ManagerOptions(testr.New(t)))
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, ctx, e.mgr.Start)
	return e
}

// waitEvent waits for an Event of this type and reason about kind/name
// and returns its message.
func (e *observeEnv) waitEvent(t *testing.T, namespace, kind, name, typ, reason string) string {
	t.Helper()
	var last []string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var events corev1.EventList
		if err := e.c.List(context.Background(), &events, client.InNamespace(namespace)); err != nil {
			t.Fatal(err)
		}
		last = nil
		for _, ev := range events.Items {
			if ev.InvolvedObject.Kind == kind && ev.InvolvedObject.Name == name && ev.Type == typ && ev.Reason == reason {
				return ev.Message
			}
			last = append(last, fmt.Sprintf("%s %s/%s %s %s", ev.Type, ev.InvolvedObject.Kind, ev.InvolvedObject.Name, ev.Reason, ev.Message))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no %s Event %s on %s %s; Events: %v", typ, reason, kind, name, last)
	return ""
}

// countEvents counts Events of this reason about kind/name.
func (e *observeEnv) countEvents(t *testing.T, namespace, kind, name, reason string) int32 {
	t.Helper()
	var events corev1.EventList
	if err := e.c.List(context.Background(), &events, client.InNamespace(namespace)); err != nil {
		t.Fatal(err)
	}
	var n int32
	for _, ev := range events.Items {
		if ev.InvolvedObject.Kind == kind && ev.InvolvedObject.Name == name && ev.Reason == reason {
			n += max(ev.Count, 1)
		}
	}
	return n
}

// gauge reads a gauge of the registry.
func (e *observeEnv) gauge(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func (e *observeEnv) waitGauge(t *testing.T, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for e.gauge(t, name) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v", name, e.gauge(t, name), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func newMember(t *testing.T, name string) (*membership.Membership, string) {
	t.Helper()
	port := testenv.FreeLoopbackPort(t)
	m, err := membership.New(membership.Config{NodeName: name, BindAddr: "127.0.0.1", BindPort: port, SecretKey: make([]byte, 32), Logger: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return m, fmt.Sprintf("127.0.0.1:%d", port)
}

func TestObservability(t *testing.T) {
	e := startObserveEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	recorder := e.mgr.GetEventRecorderFor("barelb-speaker")

	t.Run("membership that cannot form is said loudly, and its forming too", func(t *testing.T) {
		self, selfAddr := newMember(t, "n1")
		members := &MemberlistMembers{Membership: self, Log: testr.New(t)}
		w := &MembershipWatch{Members: members, Recorder: recorder, Log: testr.New(t), Node: "n1", Metrics: e.m,
			WarnAfter: 300 * time.Millisecond, Interval: 50 * time.Millisecond}
		testenv.Run(t, ctx, w.Start)
		msg := e.waitEvent(t, "default", "Node", "n1", corev1.EventTypeWarning, ReasonMembershipFallback)
		t.Logf("Warning Event on Node n1: %s", msg)
		if !strings.Contains(msg, "node readiness") {
			t.Errorf("the Event does not say what stands in: %q", msg)
		}
		e.waitGauge(t, "barelb_speaker_membership_fallback", 1)
		e.waitGauge(t, "barelb_speaker_memberlist_members", 1)

		other, _ := newMember(t, "n2")
		if _, err := other.Join(ctx, []string{selfAddr}); err != nil {
			t.Fatal(err)
		}
		msg = e.waitEvent(t, "default", "Node", "n1", corev1.EventTypeNormal, ReasonMembershipFormed)
		t.Logf("Normal Event on Node n1: %s", msg)
		e.waitGauge(t, "barelb_speaker_membership_fallback", 0)
		e.waitGauge(t, "barelb_speaker_memberlist_members", 2)
		if n := e.countEvents(t, "default", "Node", "n1", ReasonMembershipFallback); n != 1 {
			t.Errorf("%d MembershipFallback Events, want 1", n)
		}
	})

	t.Run("a kernel answering ARP for an assigned address is said loudly", func(t *testing.T) {
		sysctl := t.TempDir()
		setIgnore := func(v string) {
			t.Helper()
			for _, name := range []string{"all", "eth0"} {
				dir := filepath.Join(sysctl, "net", "ipv4", "conf", name)
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "arp_ignore"), []byte(v+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		setIgnore("1")
		vip := netip.MustParseAddr("198.51.100.200")
		host := []layer2.Interface{
			{Name: "lo", Up: true, Loopback: true, Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8"), netip.PrefixFrom(vip, 32)}},
			{Name: "eth0", Up: true, Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.11/24")}},
		}
		// kube-proxy's own configuration names the cause, when readable.
		kubeProxy := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kube-proxy", Namespace: "kube-system"},
			Data: map[string]string{"config.conf": "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs\nipvs:\n  strictARP: false\n"}}
		if err := e.c.Create(ctx, kubeProxy); err != nil {
			t.Fatal(err)
		}
		o := &Observer{APIReader: e.c, Recorder: recorder, Log: testr.New(t), Node: "n1", Metrics: e.m, SysctlRoot: sysctl,
			Interfaces: func() ([]layer2.Interface, error) { return host, nil }, Interval: 50 * time.Millisecond}
		svc := e.svc
		in := &inputs{
			services: []election.L2Service{{Key: "default/web", Addresses: []netip.Addr{vip}}},
			byKey:    map[string]*servicecache.Service{"default/web": servicecache.ServiceRecord(svc)},
		}
		plan := []election.L2Announcement{{Address: vip, Node: "n2", Services: []string{"default/web"}}}
		o.planned(ctx, in, plan, nil, host)
		if got := e.gauge(t, "barelb_speaker_kernel_answers_arp"); got != 0 {
			t.Errorf("kernel_answers_arp = %v with arp_ignore=1, want 0", got)
		}
		testenv.Run(t, ctx, o.Start)

		setIgnore("0") // seen by the periodic re-check, no plan needed
		msg := e.waitEvent(t, "default", "Node", "n1", corev1.EventTypeWarning, ReasonStrictARPOff)
		t.Logf("Warning Event on Node n1: %s", msg)
		for _, want := range []string{"198.51.100.200", "strictARP: true", "arp_ignore=1", "mode: ipvs with strictARP: false"} {
			if !strings.Contains(msg, want) {
				t.Errorf("the Event does not say %q: %q", want, msg)
			}
		}
		msg = e.waitEvent(t, "default", "Service", "web", corev1.EventTypeWarning, ReasonStrictARPOff)
		t.Logf("Warning Event on Service web: %s", msg)
		e.waitGauge(t, "barelb_speaker_kernel_answers_arp", 1)
		// Further checks and plans repeat nothing.
		o.planned(ctx, in, plan, nil, host)
		time.Sleep(300 * time.Millisecond)
		if n := e.countEvents(t, "default", "Service", "web", ReasonStrictARPOff); n != 1 {
			t.Errorf("%d StrictARPOff Events on the Service, want 1", n)
		}

		setIgnore("1")
		e.waitEvent(t, "default", "Node", "n1", corev1.EventTypeNormal, ReasonStrictARPFixed)
		e.waitGauge(t, "barelb_speaker_kernel_answers_arp", 0)
	})

	t.Run("an address won without an interface to answer on is said once", func(t *testing.T) {
		vip := netip.MustParseAddr("198.51.100.201")
		o := &Observer{Recorder: recorder, Log: testr.New(t), Node: "n1", Metrics: e.m, SysctlRoot: t.TempDir()}
		in := &inputs{
			services: []election.L2Service{{Key: "default/web", Addresses: []netip.Addr{vip}}},
			byKey:    map[string]*servicecache.Service{"default/web": servicecache.ServiceRecord(e.svc)},
		}
		plan := []election.L2Announcement{{Address: vip, Node: "n1", Interfaces: []string{"nope0"}, Services: []string{"default/web"}}}
		o.planned(ctx, in, plan, map[netip.Addr][]string{}, nil)
		o.planned(ctx, in, plan, map[netip.Addr][]string{}, nil)
		msg := e.waitEvent(t, "default", "Service", "web", corev1.EventTypeWarning, ReasonNoInterface)
		t.Logf("Warning Event on Service web: %s", msg)
		if !strings.Contains(msg, "nope0") {
			t.Errorf("the Event does not name the interface: %q", msg)
		}
		o.planned(ctx, in, plan, map[netip.Addr][]string{vip: {"eth0"}}, nil)
		time.Sleep(300 * time.Millisecond)
		if n := e.countEvents(t, "default", "Service", "web", ReasonNoInterface); n != 1 {
			t.Errorf("%d NoInterface Events, want 1", n)
		}
	})
}
