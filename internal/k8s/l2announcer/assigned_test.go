package l2announcer

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
	"github.com/barelb/barelb/internal/election"
)

// TestAnnouncesOnlyAssignedAddresses reads the plan's inputs from a real
// API server (issue 14): a Service whose status a second writer pointed
// at a node's address is not announced, and a pool whose edit the
// controller refused is announced with its addresses in force.
func TestAnnouncesOnlyAssignedAddresses(t *testing.T) {
	env, ctx, must := startAPI(t)
	c := env.Client
	readyNode(ctx, must, c, "n1", nil, "198.51.100.11")

	lan := &barelbv1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: "lan", Namespace: namespace}}
	lan.Spec.Addresses = []barelbv1beta1.AddressRange{"198.51.100.200/29"}
	must(c.Create(ctx, lan))
	// An edit of "edited" the controller refused: its spec lost the
	// address its Service holds, the status keeps the last valid one.
	edited := &barelbv1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: "edited", Namespace: namespace}}
	edited.Spec.Addresses = []barelbv1beta1.AddressRange{"198.51.100.200/30"}
	must(c.Create(ctx, edited))
	edited.Status.AddressesInForce = []string{"198.51.100.216/29"}
	edited.Status.Conditions = []metav1.Condition{{Type: config.PoolConditionValid, Status: metav1.ConditionFalse, Reason: "Invalid",
		Message: "overlap", ObservedGeneration: edited.Generation, LastTransitionTime: metav1.Now()}}
	must(c.Status().Update(ctx, edited))
	must(c.Create(ctx, &barelbv1beta1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "all", Namespace: namespace}}))

	service := func(name, pool string, ips ...string) *corev1.Service {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Annotations: map[string]string{config.AnnotationAllocatedFromPool: pool}},
			Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}},
		}
		must(c.Create(ctx, svc))
		for _, ip := range ips {
			svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
		}
		must(c.Status().Update(ctx, svc))
		return svc
	}
	service("web", "lan", "198.51.100.201")
	// A user patched the status to the node's address.
	service("forged", "lan", "198.51.100.11")
	service("kept", "edited", "198.51.100.217")

	var list corev1.ServiceList
	must(c.List(ctx, &list))
	var objs []client.Object
	for i := range list.Items {
		objs = append(objs, &list.Items[i])
	}
	in, err := read(ctx, c, recordsOf(objs), namespace, "", map[string]bool{"n1": true}, true, false)
	if err != nil {
		t.Fatal(err)
	}
	got := map[netip.Addr][]string{}
	for _, a := range election.PlanL2(in.services, in.pools, in.advs, in.nodes) {
		got[a.Address] = a.Services
	}
	want := map[netip.Addr][]string{
		netip.MustParseAddr("198.51.100.201"): {"default/web"},
		netip.MustParseAddr("198.51.100.217"): {"default/kept"},
	}
	if diff := cmp.Diff(want, got, addrEqual); diff != "" {
		t.Errorf("announced (-want +got):\n%s", diff)
	}
}
