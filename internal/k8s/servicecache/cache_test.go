package servicecache

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/event"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
	"github.com/barelb/barelb/internal/testenv"
)

const statusNamespace = "barelb-system"

// TestCache runs the cache against a real API server: lists read page by
// page (a page of two objects here), then watched changes; subscribers
// hear of what a reader can see and of nothing else.
func TestCache(t *testing.T) {
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
	must(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: statusNamespace}}))

	lb := func(name, ip string) *corev1.Service {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": name}},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}},
				AllocateLoadBalancerNodePorts: ptr.To(false)},
		}
		must(c.Create(ctx, svc))
		if ip != "" {
			svc.Annotations = map[string]string{config.AnnotationAllocatedFromPool: "lan"}
			must(c.Update(ctx, svc))
			svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip}}
			must(c.Status().Update(ctx, svc))
		}
		return svc
	}
	slice := func(name, service string, nodes ...string) *discoveryv1.EndpointSlice {
		s := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: service}},
			AddressType: discoveryv1.AddressTypeIPv4,
		}
		for i, n := range nodes {
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.1.0.%d", i+1)}, NodeName: ptr.To(n),
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
		}
		must(c.Create(ctx, s))
		return s
	}
	var services []*corev1.Service
	for i := range 5 {
		services = append(services, lb(fmt.Sprintf("web%d", i), fmt.Sprintf("198.51.100.%d", 200+i)))
	}
	lb("unallocated", "")
	must(c.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "internal", Namespace: "default"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}))
	sliceA := slice("web0-a", "web0", "n1", "n2")
	slice("web0-b", "web0", "n3")
	slice("web1-a", "web1") // no endpoint: as good as no slice
	notReady := slice("web2-a", "web2", "n1")
	notReady.Endpoints[0].Conditions.Ready = ptr.To(false)
	must(c.Update(ctx, notReady))
	status := &barelbv1beta1.ServiceL2Status{ObjectMeta: metav1.ObjectMeta{Name: "s0", Namespace: statusNamespace}}
	must(c.Create(ctx, status))
	status.Status = barelbv1beta1.ServiceL2StatusStatus{Node: "n1", ServiceName: "web0", ServiceNamespace: "default",
		Addresses: []string{"198.51.100.200"}, Interfaces: []barelbv1beta1.InterfaceInfo{{Name: "eth0"}}}
	must(c.Status().Update(ctx, status))
	must(c.Create(ctx, &barelbv1beta1.ServiceL2Status{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere", Namespace: "default"}}))

	cache, err := New(env.Config, Options{StatusNamespace: statusNamespace, Log: testr.New(t), PageSize: 2})
	must(err)
	changes := cache.Subscribe()
	testenv.Run(t, ctx, cache.Start)
	syncCtx, syncCancel := context.WithTimeout(ctx, time.Minute)
	defer syncCancel()
	if !cache.WaitForSync(syncCtx) {
		t.Fatal("the cache did not sync within a minute")
	}
	expectChange(t, changes, "the sync")

	if got := len(cache.Services()); got != 6 {
		t.Errorf("%d Services cached, want the 6 LoadBalancer Services", got)
	}
	web0 := cache.Service("default/web0")
	want := &Service{Namespace: "default", Name: "web0", UID: services[0].UID, ResourceVersion: web0.ResourceVersion,
		Labels: map[string]string{"app": "web0"}, Pool: "lan", Addresses: []netip.Addr{netip.MustParseAddr("198.51.100.200")}, key: "default/web0"}
	if diff := cmp.Diff(want, web0, cmp.AllowUnexported(Service{}), cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("web0 (-want +got):\n%s", diff)
	}
	if un := cache.Service("default/unallocated"); un == nil || un.Pool != "" || len(un.Addresses) != 0 {
		t.Errorf("unallocated is %+v, want a record without pool and addresses", un)
	}
	if got := cache.Service("default/internal"); got != nil {
		t.Errorf("a ClusterIP Service is cached: %+v", got)
	}
	for key, want := range map[string]map[string]bool{
		"default/web0": {"n1": true, "n2": true, "n3": true}, "default/web1": {}, "default/web2": {},
	} {
		if diff := cmp.Diff(want, cache.EndpointNodes(key)); diff != "" {
			t.Errorf("endpoint nodes of %s (-want +got):\n%s", key, diff)
		}
	}
	statuses := cache.Statuses()
	if len(statuses) != 1 || statuses["s0"] == nil || statuses["s0"].ResourceVersion != status.ResourceVersion {
		t.Errorf("statuses %v, want s0 of %s alone as written (resource version %s)", slices.Sorted(maps.Keys(statuses)), statusNamespace, status.ResourceVersion)
	} else if diff := cmp.Diff(status.Status, statuses["s0"].Status); diff != "" {
		t.Errorf("status s0 (-want +got):\n%s", diff)
	}

	// What a reader cannot see changes nothing.
	svc := services[1]
	svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: "other", Port: 8080})
	svc.Spec.Ports[0].Name = "http"
	must(c.Update(ctx, svc))
	sliceA.Endpoints[0].Addresses = []string{"10.1.0.99"}
	must(c.Update(ctx, sliceA))
	status.Status.Node = "n2"
	must(c.Status().Update(ctx, status))
	expectNoChange(t, changes, "a Service's ports, an EndpointSlice's addresses, a written status")
	if got := cache.Statuses()["s0"]; got == nil || got.Status.Node != "n2" {
		t.Errorf("the status written is not cached: %+v", got)
	}

	// What a reader sees does.
	for _, step := range []struct {
		name   string
		change func()
		check  func() bool
	}{
		{"a new address", func() {
			svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: "2001:db8::1"})
			must(c.Status().Update(ctx, svc))
		}, func() bool { return len(cache.Service("default/web1").Addresses) == 2 }},
		{"new labels", func() {
			svc.Labels = map[string]string{"app": "other"}
			must(c.Update(ctx, svc))
		}, func() bool { return cache.Service("default/web1").Labels["app"] == "other" }},
		{"externalTrafficPolicy Local", func() {
			svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			must(c.Update(ctx, svc))
		}, func() bool { return cache.Service("default/web1").LocalTraffic }},
		{"a Service deleted", func() { must(c.Delete(ctx, services[4])) }, func() bool { return cache.Service("default/web4") == nil }},
		{"a type changed", func() {
			services[3].Spec.Type = corev1.ServiceTypeClusterIP
			services[3].Spec.AllocateLoadBalancerNodePorts = nil
			must(c.Update(ctx, services[3]))
		}, func() bool { return cache.Service("default/web3") == nil }},
		{"an endpoint not ready", func() {
			sliceA.Endpoints[1].Conditions.Ready = ptr.To(false)
			must(c.Update(ctx, sliceA))
		}, func() bool {
			return cmp.Equal(cache.EndpointNodes("default/web0"), map[string]bool{"n1": true, "n3": true})
		}},
		{"a slice deleted", func() { must(c.Delete(ctx, sliceA)) }, func() bool {
			return cmp.Equal(cache.EndpointNodes("default/web0"), map[string]bool{"n3": true})
		}},
		{"an endpoint ready", func() {
			notReady.Endpoints[0].Conditions.Ready = ptr.To(true)
			must(c.Update(ctx, notReady))
		}, func() bool {
			return cmp.Equal(cache.EndpointNodes("default/web2"), map[string]bool{"n1": true})
		}},
		{"a status deleted", func() { must(c.Delete(ctx, status)) }, func() bool { return len(cache.Statuses()) == 0 }},
	} {
		step.change()
		expectChange(t, changes, step.name)
		if !step.check() {
			t.Errorf("after %s the cache does not show it", step.name)
		}
	}
}

func expectChange(t *testing.T, changes <-chan event.GenericEvent, what string) {
	t.Helper()
	select {
	case <-changes:
	case <-time.After(30 * time.Second):
		t.Fatalf("no change told after %s", what)
	}
}

func expectNoChange(t *testing.T, changes <-chan event.GenericEvent, what string) {
	t.Helper()
	select {
	case <-changes:
		t.Errorf("a change was told after %s", what)
	case <-time.After(2 * time.Second):
	}
}
