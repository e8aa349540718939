package cli

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/testenv"
	"github.com/barelb/barelb/internal/testutil"
)

const barelbNS = "barelb-system"

// base is the time the test's Events happen around.
var base = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// TestClusterCommands runs status and pools against a real API server
// holding Services (their status written through the status
// subresource), pools with status, status objects and Events, and
// compares the tables and JSON with golden files.
func TestClusterCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an API server")
	}
	env := testenv.Start(t, testenv.Options{})
	ctx := context.Background()
	c := env.Client
	for _, ns := range []string{barelbNS, "shop", "web"} {
		must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	}

	// Pools, with the status the controller would write.
	pool(t, c, "default", nil, []string{"198.51.100.0/28", "2001:db8:1::/120"}, barelbv1beta1.IPAddressPoolStatus{
		AssignedIPv4: 3, AvailableIPv4: 13, AssignedIPv6: 1, AvailableIPv6: 255,
		Conditions: []metav1.Condition{cond("Valid", "True", "Valid", "the pool is valid"), cond("Overlapping", "False", "NoOverlap", "")},
	})
	pool(t, c, "reserved", ptr.To(false), []string{"203.0.113.0/30"}, barelbv1beta1.IPAddressPoolStatus{
		AssignedIPv4: 1, AvailableIPv4: 3,
		Conditions: []metav1.Condition{cond("Valid", "True", "Valid", "the pool is valid"), cond("Overlapping", "True", "Overlap", "overlaps pool default at 203.0.113.0/30")},
	})
	pool(t, c, "huge-v6", nil, []string{"2001:db8:2::/64"}, barelbv1beta1.IPAddressPoolStatus{
		AvailableIPv6: math.MaxInt64,
		Conditions:    []metav1.Condition{cond("Valid", "False", "Invalid", "serviceAllocation: namespaceSelectors[0]: invalid label selector")},
	})
	pool(t, c, "fresh", nil, []string{"198.51.100.64-198.51.100.70"}, barelbv1beta1.IPAddressPoolStatus{})

	// Services barelb serves, and two it does not.
	frontend := service(t, c, "shop", "frontend", nil, "default", "198.51.100.1", "2001:db8:1::1")
	api := service(t, c, "shop", "api", nil, "reserved", "203.0.113.1")
	pending := service(t, c, "web", "pending", nil, "")
	service(t, c, "web", "unannounced", nil, "default", "198.51.100.2")
	flaky := service(t, c, "web", "flaky", nil, "default", "198.51.100.3")
	service(t, c, "web", "other-class", ptr.To("example.com/other"), "")
	must(t, c.Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "internal"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
	}))

	// Services with the controller's conditions: they say what is wrong,
	// in place of the guesses from statuses and Events.
	withConditions(t, c, service(t, c, "web", "conditioned", nil, "default", "198.51.100.4"),
		cond(barelbv1beta1.ConditionAddressAssigned, "True", "IPAllocated", "assigned 198.51.100.4 from pool default"),
		cond(barelbv1beta1.ConditionAnnounced, "False", "NoBGPSessionUp", "BGP: advertised to tor-a (from node-1), but no session is established"))
	withConditions(t, c, service(t, c, "web", "refused", nil, ""),
		cond(barelbv1beta1.ConditionAddressAssigned, "False", "PoolExhausted", "every pool this Service may use is out of IPv4 addresses"),
		cond(barelbv1beta1.ConditionAnnounced, "False", "NoAddress", "the Service has no address to announce (see the barelb.io/AddressAssigned condition)"))
	announcedL2 := service(t, c, "web", "announced", nil, "default", "198.51.100.5")
	l2Status(t, c, announcedL2, "node-2")
	withConditions(t, c, announcedL2,
		cond(barelbv1beta1.ConditionAddressAssigned, "True", "IPAllocated", "assigned 198.51.100.5 from pool default"),
		cond(barelbv1beta1.ConditionAnnounced, "True", "Layer2", "layer 2: node node-2 answers ARP/NDP for 198.51.100.5 on eth0"),
		cond("example.com/Other", "False", "NotOurs", "another component's condition is not shown"))

	// What the speakers report.
	l2Status(t, c, frontend, "node-1")
	l2Status(t, c, flaky, "node-2")
	bgpStatus(t, c, api, "node-1", "tor-b", "tor-a")
	bgpStatus(t, c, api, "node-2", "tor-a")

	// Events: frontend's old warning was followed by a success; pending's
	// latest warning explains it; flaky's warning is newer than its last
	// success. An Event about an earlier Service named frontend is ignored.
	event(t, c, frontend, "w1", corev1.EventTypeWarning, "AllocationFailed", "no address left in pool default", 0)
	event(t, c, frontend, "n1", corev1.EventTypeNormal, "IPAllocated", "assigned 198.51.100.1 from pool default", time.Minute)
	event(t, c, pending, "w1", corev1.EventTypeWarning, "AllocationFailed", "old failure", time.Minute)
	event(t, c, pending, "w2", corev1.EventTypeWarning, "AllocationFailed", "no pool admits this Service: pool reserved is not auto-assigned", 2*time.Minute)
	event(t, c, flaky, "n1", corev1.EventTypeNormal, "nodeAssigned", "announcing from node node-2", time.Minute)
	event(t, c, flaky, "w1", corev1.EventTypeWarning, "AddressConflict", "another host answers ARP for 198.51.100.3", 3*time.Minute)
	// Speakers' Events on Nodes: node-1's partition healed; node-2's
	// goes on.
	nodeEvent(t, c, "node-1", "w1", corev1.EventTypeWarning, "SpeakerPartition", "the speaker of node \"node-2\" answers on the LAN for 198.51.100.3, but memberlist on this node sees only node-1", time.Minute)
	nodeEvent(t, c, "node-1", "n1", corev1.EventTypeNormal, "SpeakerPartitionHealed", "memberlist sees it again", 2*time.Minute)
	nodeEvent(t, c, "node-2", "w1", corev1.EventTypeWarning, "SpeakerPartition", "the speaker of node \"node-1\" still runs (it renews its Lease), but memberlist on this node sees only node-2", time.Minute)
	stale := frontend.DeepCopy()
	stale.UID = "00000000-0000-0000-0000-000000000000"
	event(t, c, stale, "w2", corev1.EventTypeWarning, "AllocationFailed", "from a deleted Service", 10*time.Minute)

	kubeconfig := env.WriteKubeconfig(t)
	for _, tc := range []struct {
		golden string
		args   []string
	}{
		{"status.golden", []string{"status"}},
		{"status.json.golden", []string{"status", "-o", "json"}},
		{"pools.golden", []string{"pools"}},
		{"pools.json.golden", []string{"pools", "--output=json"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			out, errOut, code := run(t, "", append(tc.args, "--kubeconfig", kubeconfig)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			testutil.Golden(t, filepath.Join("testdata", tc.golden), []byte(out))
		})
	}

	t.Run("KUBECONFIG and --context", func(t *testing.T) {
		t.Setenv("KUBECONFIG", kubeconfig)
		want, _, _ := run(t, "", "pools", "--kubeconfig", kubeconfig)
		out, errOut, code := run(t, "", "pools")
		if code != 0 || out != want {
			t.Errorf("with KUBECONFIG only: exit %d, %s\n%s", code, errOut, out)
		}
		_, errOut, code = run(t, "", "pools", "--context", "no-such-context")
		if code != 1 || !strings.Contains(errOut, `context "no-such-context" does not exist`) {
			t.Errorf("--context no-such-context: exit %d: %s", code, errOut)
		}
	})

	t.Run("another namespace holds nothing", func(t *testing.T) {
		out, errOut, code := run(t, "", "pools", "--kubeconfig", kubeconfig, "-n", "web")
		if code != 0 || strings.Count(out, "\n") != 1 {
			t.Errorf("pools -n web: exit %d, %s\n%s", code, errOut, out)
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func cond(typ, status, reason, msg string) metav1.Condition {
	return metav1.Condition{Type: typ, Status: metav1.ConditionStatus(status), Reason: reason, Message: msg, LastTransitionTime: metav1.NewTime(base)}
}

func pool(t *testing.T, c client.Client, name string, autoAssign *bool, addrs []string, st barelbv1beta1.IPAddressPoolStatus) {
	t.Helper()
	p := &barelbv1beta1.IPAddressPool{
		ObjectMeta: metav1.ObjectMeta{Namespace: barelbNS, Name: name},
		Spec:       barelbv1beta1.IPAddressPoolSpec{AutoAssign: autoAssign},
	}
	for _, a := range addrs {
		p.Spec.Addresses = append(p.Spec.Addresses, barelbv1beta1.AddressRange(a))
	}
	must(t, c.Create(context.Background(), p))
	p.Status = st
	must(t, c.Status().Update(context.Background(), p))
}

func service(t *testing.T, c client.Client, ns, name string, class *string, pool string, ips ...string) *corev1.Service {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:                          corev1.ServiceTypeLoadBalancer,
			LoadBalancerClass:             class,
			AllocateLoadBalancerNodePorts: ptr.To(false),
			Ports:                         []corev1.ServicePort{{Port: 80}},
		},
	}
	if pool != "" {
		svc.Annotations = map[string]string{"barelb.io/ip-allocated-from-pool": pool}
	}
	must(t, c.Create(context.Background(), svc))
	if len(ips) > 0 {
		for _, ip := range ips {
			svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
		}
		must(t, c.Status().Update(context.Background(), svc))
	}
	return svc
}

func withConditions(t *testing.T, c client.Client, svc *corev1.Service, conds ...metav1.Condition) {
	t.Helper()
	svc.Status.Conditions = conds
	must(t, c.Status().Update(context.Background(), svc))
}

func statusLabels(svc *corev1.Service) map[string]string {
	return map[string]string{barelbv1beta1.LabelServiceName: svc.Name, barelbv1beta1.LabelServiceNamespace: svc.Namespace}
}

func l2Status(t *testing.T, c client.Client, svc *corev1.Service, node string) {
	t.Helper()
	st := &barelbv1beta1.ServiceL2Status{ObjectMeta: metav1.ObjectMeta{
		Namespace: barelbNS, GenerateName: "l2-", Labels: statusLabels(svc),
	}}
	must(t, c.Create(context.Background(), st))
	st.Status = barelbv1beta1.ServiceL2StatusStatus{Node: node, ServiceName: svc.Name, ServiceNamespace: svc.Namespace}
	must(t, c.Status().Update(context.Background(), st))
}

func bgpStatus(t *testing.T, c client.Client, svc *corev1.Service, node string, peers ...string) {
	t.Helper()
	st := &barelbv1beta1.ServiceBGPStatus{ObjectMeta: metav1.ObjectMeta{
		Namespace: barelbNS, GenerateName: "bgp-", Labels: statusLabels(svc),
	}}
	must(t, c.Create(context.Background(), st))
	st.Status = barelbv1beta1.ServiceBGPStatusStatus{Node: node, ServiceName: svc.Name, ServiceNamespace: svc.Namespace, Peers: peers}
	must(t, c.Status().Update(context.Background(), st))
}

func nodeEvent(t *testing.T, c client.Client, node, suffix, typ, reason, msg string, after time.Duration) {
	t.Helper()
	at := metav1.NewTime(base.Add(after))
	must(t, c.Create(context.Background(), &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Namespace: "default", Name: node + "." + suffix},
		InvolvedObject: corev1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: node, UID: types.UID(node)},
		Type:           typ, Reason: reason, Message: msg,
		FirstTimestamp: at, LastTimestamp: at, Count: 1,
		Source: corev1.EventSource{Component: "barelb-speaker", Host: node},
	}))
}

func event(t *testing.T, c client.Client, svc *corev1.Service, suffix, typ, reason, msg string, after time.Duration) {
	t.Helper()
	at := metav1.NewTime(base.Add(after))
	must(t, c.Create(context.Background(), &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Namespace: svc.Namespace, Name: svc.Name + "." + suffix},
		InvolvedObject: corev1.ObjectReference{
			Kind: "Service", APIVersion: "v1", Namespace: svc.Namespace, Name: svc.Name, UID: svc.UID,
		},
		Type: typ, Reason: reason, Message: msg,
		FirstTimestamp: at, LastTimestamp: at, Count: 1,
		Source: corev1.EventSource{Component: "barelb-controller"},
	}))
}
