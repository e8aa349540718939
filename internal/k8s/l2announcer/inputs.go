package l2announcer

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
	"github.com/barelb/barelb/internal/election"
	"github.com/barelb/barelb/internal/k8s/servicecache"
	"github.com/barelb/barelb/internal/k8s/speakerglue"
)

// ExcludeLabel keeps a node out of external load balancing, as for cloud
// load balancers.
const ExcludeLabel = "node.kubernetes.io/exclude-from-external-load-balancers"

// drained tells whether a node is under planned maintenance: labelled
// barelb.io/drain, or, with onCordon (the speaker's --drain-on-cordon),
// cordoned. Cordoning alone is no drain by default: operators cordon
// nodes for many reasons (an upgrade's first step, a full disk, a
// scheduling experiment), and an address moving each time is a surprise
// (MetalLB made cordon exclude nodes, and reverted it).
func drained(n *corev1.Node, onCordon bool) bool {
	_, labelled := n.Labels[barelbv1beta1.LabelDrain]
	return labelled || (onCordon && n.Spec.Unschedulable)
}

// inputs is everything the plan is computed from, read from the caches.
type inputs struct {
	services []election.L2Service
	byKey    map[string]*servicecache.Service
	pools    map[string]*config.Pool
	advs     []*config.L2Advertisement
	nodes    []election.L2Node
}

// ServiceSource is where the announcer reads Services and their endpoints'
// nodes: a *servicecache.Cache.
type ServiceSource interface {
	Services() []*servicecache.Service
	EndpointNodes(key string) map[string]bool
}

// read gathers the plan's inputs: Services and endpoints from services,
// the rest from c. alive names the live speakers; ok is false when
// membership is unavailable, and node readiness stands in.
func read(ctx context.Context, c client.Reader, services ServiceSource, namespace, lbClass string, alive map[string]bool, membershipOK, drainOnCordon bool) (*inputs, error) {
	var poolList barelbv1beta1.IPAddressPoolList
	if err := c.List(ctx, &poolList, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing IPAddressPools: %w", err)
	}
	var advList barelbv1beta1.L2AdvertisementList
	if err := c.List(ctx, &advList, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing L2Advertisements: %w", err)
	}
	// Nodes are read without copying them out of the cache: everything
	// read here is read-only.
	var nodeList corev1.NodeList
	if err := c.List(ctx, &nodeList, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing Nodes: %w", err)
	}
	return inputsFrom(poolList.Items, advList.Items, nodeList.Items, services, lbClass, alive, membershipOK, drainOnCordon), nil
}

// inputsFrom makes the plan's inputs from the objects read, from the
// caches or from another speaker's table (see PeerTable). drainOnCordon:
// see drained.
func inputsFrom(pools []barelbv1beta1.IPAddressPool, advs []barelbv1beta1.L2Advertisement, nodes []corev1.Node, services ServiceSource, lbClass string, alive map[string]bool, membershipOK, drainOnCordon bool) *inputs {
	in := &inputs{pools: make(map[string]*config.Pool, len(pools))}
	for i := range pools {
		// The definition the controller uses: the last valid one while
		// it refuses an edit.
		if p, err := config.PoolInForce(&pools[i]); err == nil {
			in.pools[p.Name] = p
		}
	}
	for i := range advs {
		if a, err := config.L2AdvertisementFromAPI(&advs[i]); err == nil {
			in.advs = append(in.advs, a)
		}
	}
	in.nodes = make([]election.L2Node, 0, len(nodes))
	for i := range nodes {
		n := &nodes[i]
		_, excluded := n.Labels[ExcludeLabel]
		isAlive := alive[n.Name]
		if !membershipOK {
			isAlive = speakerglue.NodeCondition(n, corev1.NodeReady) == corev1.ConditionTrue
		}
		in.nodes = append(in.nodes, election.L2Node{
			Name:     n.Name,
			Labels:   labels.Set(n.Labels),
			Alive:    isAlive,
			Excluded: excluded || speakerglue.NodeCondition(n, corev1.NodeNetworkUnavailable) == corev1.ConditionTrue,
			Drained:  drained(n, drainOnCordon),
		})
	}

	// The records are shared with the cache and read-only, and so are
	// their labels and addresses handed to the plan.
	all := services.Services()
	in.services = make([]election.L2Service, 0, len(all))
	in.byKey = make(map[string]*servicecache.Service, len(all))
	for _, svc := range all {
		if !svc.ServedBy(lbClass) || svc.Pool == "" || len(svc.Addresses) == 0 {
			continue
		}
		// Only addresses of the pool the controller recorded are answered
		// for: a second writer of the status must not make a node answer
		// for a node's or the gateway's address.
		addrs := config.AnnouncedAddresses(in.pools[svc.Pool], svc.Addresses)
		if len(addrs) == 0 {
			continue
		}
		key := svc.Key()
		s := election.L2Service{
			Key:          key,
			Labels:       labels.Set(svc.Labels),
			Pool:         svc.Pool,
			LocalTraffic: svc.LocalTraffic,
			Addresses:    addrs,
		}
		if s.LocalTraffic {
			s.EndpointNodes = services.EndpointNodes(key)
		}
		in.services = append(in.services, s)
		in.byKey[key] = svc
	}
	return in
}

// CacheTransforms trim the objects the speaker caches to what the
// announcer reads: at 10,000 Services the caches are most of the
// speaker's memory, and a Service, its EndpointSlice or a Node carries
// much that the speaker never looks at. The speaker's cache applies them
// (internal/app), so that anything else reading Services, EndpointSlices
// or Nodes from the speaker's cache sees only these fields:
//
//   - Service: name, namespace, UID, resource version (for Events),
//     labels, the barelb.io/ip-allocated-from-pool annotation, spec.type,
//     spec.loadBalancerClass, spec.externalTrafficPolicy and the IPs of
//     status.loadBalancer.ingress;
//   - EndpointSlice: name, namespace, the kubernetes.io/service-name
//     label, and each endpoint's nodeName and ready condition;
//   - Node: name, UID, resource version, labels, spec.unschedulable
//     (see drained), status.addresses and the Ready and
//     NetworkUnavailable conditions (type and status);
//   - ServiceL2Status: everything but labels (report compares statuses;
//     labels are for people and tools finding a Service's status).
//
// Managed fields are stripped from every kind (see internal/app).
func CacheTransforms() map[client.Object]toolscache.TransformFunc {
	return map[client.Object]toolscache.TransformFunc{
		&corev1.Service{}:                (&poolAnnotations{}).slimService,
		&discoveryv1.EndpointSlice{}:     slimEndpointSlice,
		&corev1.Node{}:                   slimNode,
		&barelbv1beta1.ServiceL2Status{}: slimStatus,
	}
}

func (p *poolAnnotations) slimService(in any) (any, error) {
	svc, ok := in.(*corev1.Service)
	if !ok {
		return in, nil
	}
	out := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name: svc.Name, Namespace: svc.Namespace, UID: svc.UID, ResourceVersion: svc.ResourceVersion,
			Labels: svc.Labels,
		},
		Spec: corev1.ServiceSpec{
			Type:                  svc.Spec.Type,
			LoadBalancerClass:     svc.Spec.LoadBalancerClass,
			ExternalTrafficPolicy: svc.Spec.ExternalTrafficPolicy,
		},
	}
	if pool, ok := svc.Annotations[config.AnnotationAllocatedFromPool]; ok {
		out.Annotations = p.of(pool)
	}
	if n := len(svc.Status.LoadBalancer.Ingress); n > 0 {
		out.Status.LoadBalancer.Ingress = make([]corev1.LoadBalancerIngress, 0, n)
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			out.Status.LoadBalancer.Ingress = append(out.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ing.IP})
		}
	}
	return out, nil
}

// poolAnnotations hands out one annotations map per pool, shared by the
// Services in the speaker's cache: a map costs 300 bytes, and 10,000
// Services name a handful of pools. Nothing modifies an object in the
// cache (readers get copies, or promise not to), so sharing is safe.
type poolAnnotations struct{ byPool sync.Map } // pool name → map[string]string

func (p *poolAnnotations) of(pool string) map[string]string {
	if m, ok := p.byPool.Load(pool); ok {
		return m.(map[string]string)
	}
	m, _ := p.byPool.LoadOrStore(pool, map[string]string{config.AnnotationAllocatedFromPool: pool})
	return m.(map[string]string)
}

func slimEndpointSlice(in any) (any, error) {
	slice, ok := in.(*discoveryv1.EndpointSlice)
	if !ok {
		return in, nil
	}
	out := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: slice.Name, Namespace: slice.Namespace, UID: slice.UID, ResourceVersion: slice.ResourceVersion,
		},
		AddressType: slice.AddressType,
	}
	if name, ok := slice.Labels[discoveryv1.LabelServiceName]; ok {
		out.Labels = map[string]string{discoveryv1.LabelServiceName: name}
	}
	for _, ep := range slice.Endpoints {
		if ep.NodeName == nil {
			continue // endpointNodes skips these
		}
		out.Endpoints = append(out.Endpoints, discoveryv1.Endpoint{
			NodeName:   ep.NodeName,
			Conditions: discoveryv1.EndpointConditions{Ready: ep.Conditions.Ready},
		})
	}
	return out, nil
}

func slimNode(in any) (any, error) {
	node, ok := in.(*corev1.Node)
	if !ok {
		return in, nil
	}
	out := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: node.Name, UID: node.UID, ResourceVersion: node.ResourceVersion, Labels: node.Labels,
		},
		// spec.unschedulable: a cordoned node is drained with
		// --drain-on-cordon, and BGP sends its routes with the
		// GRACEFUL_SHUTDOWN community.
		Spec:   corev1.NodeSpec{Unschedulable: node.Spec.Unschedulable},
		Status: corev1.NodeStatus{Addresses: node.Status.Addresses},
	}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady || c.Type == corev1.NodeNetworkUnavailable {
			out.Status.Conditions = append(out.Status.Conditions, corev1.NodeCondition{Type: c.Type, Status: c.Status})
		}
	}
	return out, nil
}

func slimStatus(in any) (any, error) {
	if s, ok := in.(*barelbv1beta1.ServiceL2Status); ok {
		s.Labels = nil
		s.ManagedFields = nil
		s.Annotations = nil
	}
	return in, nil
}
