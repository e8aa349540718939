package l2announcer

import (
	"context"
	"net/netip"
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
	"github.com/barelb/barelb/internal/election"
	"github.com/barelb/barelb/internal/k8s/servicecache"
	barelbscheme "github.com/barelb/barelb/internal/scheme"
)

// records is a ServiceSource made of the servicecache records of typed
// objects.
type records struct {
	services []*servicecache.Service
	nodes    map[string]map[string]bool
}

func recordsOf(objs []client.Object) *records {
	r := &records{nodes: map[string]map[string]bool{}}
	for _, obj := range objs {
		switch o := obj.(type) {
		case *corev1.Service:
			if rec := servicecache.ServiceRecord(o); rec != nil {
				r.services = append(r.services, rec)
			}
		case *discoveryv1.EndpointSlice:
			key := o.Namespace + "/" + o.Labels[discoveryv1.LabelServiceName]
			for _, n := range servicecache.ReadyNodes(o) {
				if r.nodes[key] == nil {
					r.nodes[key] = map[string]bool{}
				}
				r.nodes[key][n] = true
			}
		}
	}
	return r
}

func (r *records) Services() []*servicecache.Service { return r.services }
func (r *records) EndpointNodes(key string) map[string]bool {
	out := map[string]bool{}
	for n := range r.nodes[key] {
		out[n] = true
	}
	return out
}

// sampleObjects are the objects of a small cluster as the API server
// sends them, with what the speaker reads and what it ignores.
func sampleObjects() []client.Object {
	managed := []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationUpdate}}
	class := "other"
	svc := func(name string, mutate func(*corev1.Service)) *corev1.Service {
		s := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{
				Name: name, Namespace: "default", UID: types.UID("uid-" + name), ResourceVersion: "7",
				Labels:        map[string]string{"app": name},
				Annotations:   map[string]string{config.AnnotationAllocatedFromPool: "lan", "kubectl.kubernetes.io/last-applied-configuration": "{…}"},
				ManagedFields: managed,
			},
			Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}},
				Selector: map[string]string{"app": name}, ClusterIP: "10.0.0.1",
			},
			Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{
				{IP: "198.51.100.200", IPMode: ptr.To(corev1.LoadBalancerIPModeVIP)}, {IP: "2001:db8::200"},
			}}},
		}
		mutate(s)
		return s
	}
	slice := func(name, service string, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", ManagedFields: managed,
				Labels: map[string]string{discoveryv1.LabelServiceName: service, discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   eps,
			Ports:       []discoveryv1.EndpointPort{{Port: ptr.To[int32](80)}},
		}
	}
	ep := func(node *string, ready *bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{"10.1.0.1"}, NodeName: node, Conditions: discoveryv1.EndpointConditions{Ready: ready, Serving: ptr.To(true)},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "p"}}
	}
	node := func(name string, labels map[string]string, conds ...corev1.NodeCondition) *corev1.Node {
		return &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, ManagedFields: managed, Annotations: map[string]string{"node.alpha.kubernetes.io/ttl": "0"}},
			Spec:       corev1.NodeSpec{PodCIDR: "10.1.0.0/24"},
			Status: corev1.NodeStatus{
				Conditions: conds,
				Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.51.100.11"}},
				Images:     []corev1.ContainerImage{{Names: []string{"registry/image:tag"}, SizeBytes: 1 << 20}},
			},
		}
	}
	cordoned := func(n *corev1.Node) *corev1.Node { n.Spec.Unschedulable = true; return n }
	cond := func(typ corev1.NodeConditionType, status corev1.ConditionStatus) corev1.NodeCondition {
		return corev1.NodeCondition{Type: typ, Status: status, Reason: "KubeletReady", Message: "kubelet is posting ready status"}
	}
	return []client.Object{
		svc("cluster", func(*corev1.Service) {}),
		svc("local", func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal }),
		svc("other-class", func(s *corev1.Service) { s.Spec.LoadBalancerClass = &class }),
		svc("no-pool", func(s *corev1.Service) { s.Annotations = nil }),
		svc("cluster-ip", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP }),
		// A second writer patched the status to a node's address: the
		// speaker must not answer for it.
		svc("forged", func(s *corev1.Service) {
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.11"}}
		}),
		svc("unknown-pool", func(s *corev1.Service) { s.Annotations[config.AnnotationAllocatedFromPool] = "no-such-pool" }),
		&barelbv1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: "lan", Namespace: namespace},
			Spec: barelbv1beta1.IPAddressPoolSpec{Addresses: []barelbv1beta1.AddressRange{"198.51.100.192/27", "2001:db8::/112"}}},
		slice("local-a", "local", ep(ptr.To("n1"), ptr.To(true)), ep(ptr.To("n2"), ptr.To(false)), ep(nil, ptr.To(true))),
		slice("local-b", "local", ep(ptr.To("n3"), nil)),
		slice("cluster-a", "cluster", ep(ptr.To("n2"), ptr.To(true))),
		node("n1", map[string]string{"zone": "a"}, cond(corev1.NodeReady, corev1.ConditionTrue)),
		node("n2", map[string]string{"zone": "b", ExcludeLabel: ""}, cond(corev1.NodeReady, corev1.ConditionTrue)),
		cordoned(node("n3", nil, cond(corev1.NodeReady, corev1.ConditionFalse), cond(corev1.NodeNetworkUnavailable, corev1.ConditionTrue),
			cond(corev1.NodeMemoryPressure, corev1.ConditionFalse))),
	}
}

// TestCacheTransformsKeepWhatReadReads proves the speaker's cache
// transforms and service records correct: the plan's inputs read from
// trimmed objects and records are the inputs the objects as the API
// server sends them make.
func TestCacheTransformsKeepWhatReadReads(t *testing.T) {
	objects := sampleObjects()
	managed := []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationUpdate}}
	transforms := CacheTransforms()
	trim := func(obj client.Object) client.Object {
		for kind, tf := range transforms {
			if reflect.TypeOf(kind) == reflect.TypeOf(obj) {
				out, err := tf(obj.DeepCopyObject())
				if err != nil {
					t.Fatal(err)
				}
				return out.(client.Object)
			}
		}
		return obj
	}
	scheme, err := barelbscheme.New()
	if err != nil {
		t.Fatal(err)
	}
	readAll := func(objs []client.Object, membershipOK bool) *inputs {
		c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).
			WithStatusSubresource(&corev1.Service{}, &corev1.Node{}, &barelbv1beta1.ServiceL2Status{}).Build()
		in, err := read(context.Background(), c, recordsOf(objs), namespace, "", map[string]bool{"n1": true, "n3": true}, membershipOK, true)
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	var trimmed []client.Object
	for _, obj := range objects {
		trimmed = append(trimmed, trim(obj))
		if got := trimmed[len(trimmed)-1]; len(got.GetManagedFields()) > 0 {
			t.Errorf("%T %s keeps its managed fields", got, got.GetName())
		}
	}
	for _, membershipOK := range []bool{true, false} {
		full, slim := readAll(objects, membershipOK), readAll(trimmed, membershipOK)
		if diff := cmp.Diff(full.services, slim.services, addrEqual); diff != "" {
			t.Errorf("membership %v: services read from trimmed objects (-full +trimmed):\n%s", membershipOK, diff)
		}
		if diff := cmp.Diff(full.nodes, slim.nodes, addrEqual); diff != "" {
			t.Errorf("membership %v: nodes read from trimmed objects (-full +trimmed):\n%s", membershipOK, diff)
		}
		if len(full.nodes) != 3 {
			t.Fatalf("the test reads %d nodes, want 3", len(full.nodes))
		}
		// --drain-on-cordon: the cordoned node is drained, in the cache
		// too (its spec.unschedulable is kept).
		if !slim.nodes[2].Drained || slim.nodes[0].Drained {
			t.Errorf("membership %v: drained nodes %+v, want only n3 (cordoned)", membershipOK, slim.nodes)
		}
		want := []election.L2Service{
			{Key: "default/cluster", Labels: labels.Set{"app": "cluster"}, Pool: "lan",
				Addresses: []netip.Addr{netip.MustParseAddr("198.51.100.200"), netip.MustParseAddr("2001:db8::200")}},
			{Key: "default/local", Labels: labels.Set{"app": "local"}, Pool: "lan", LocalTraffic: true, EndpointNodes: map[string]bool{"n1": true, "n3": true},
				Addresses: []netip.Addr{netip.MustParseAddr("198.51.100.200"), netip.MustParseAddr("2001:db8::200")}},
		}
		if diff := cmp.Diff(want, full.services, addrEqual); diff != "" {
			t.Errorf("membership %v: services read (-want +got):\n%s", membershipOK, diff)
		}
		for key := range full.byKey {
			if got := full.byKey[key]; got.UID != types.UID("uid-"+got.Name) || got.ResourceVersion != "7" {
				t.Errorf("Service %s as report sees it: %+v", key, got)
			}
		}
	}

	status := &barelbv1beta1.ServiceL2Status{ObjectMeta: metav1.ObjectMeta{Name: "s", Labels: map[string]string{barelbv1beta1.LabelServiceName: "web"}, ManagedFields: managed},
		Status: barelbv1beta1.ServiceL2StatusStatus{Node: "n1", ServiceName: "web", Addresses: []string{"198.51.100.200"}}}
	got := trim(status).(*barelbv1beta1.ServiceL2Status)
	if diff := cmp.Diff(status.Status, got.Status); diff != "" {
		t.Errorf("ServiceL2Status's status trimmed (-want +got):\n%s", diff)
	}
	if got.Labels != nil || got.ManagedFields != nil {
		t.Errorf("ServiceL2Status trimmed keeps labels %v or managed fields %v", got.Labels, got.ManagedFields)
	}
}

// addrEqual lets cmp.Diff compare netip.Addr values (the package's tests
// share it).
var addrEqual = cmpopts.EquateComparable(netip.Addr{})
