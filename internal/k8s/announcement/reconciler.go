package announcement

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
	"github.com/barelb/barelb/internal/k8s/heartbeat"
	"github.com/barelb/barelb/internal/k8s/servicecondition"
)

// Index names of the cache: a Service's statuses and EndpointSlices are
// found by its key (namespace/name) without a scan of every object.
const (
	indexService = "barelb.io/service"
	// indexAddress indexes LoadBalancer Services by the addresses in
	// their status, to find the Services sharing one.
	indexAddress = "barelb.io/address"
)

// excludeLabel keeps a node from announcing (as for the speakers).
const excludeLabel = "node.kubernetes.io/exclude-from-external-load-balancers"

// Reconciler writes the barelb.io/Announced condition of LoadBalancer
// Services.
type Reconciler struct {
	// Client reads Services, Nodes, EndpointSlices, configuration and the
	// speakers' statuses from the manager's cache, and writes.
	Client client.Client
	// Leases reads the speakers' Leases (barelb's namespace only).
	Leases    client.Reader
	Namespace string
	LBClass   string
	// Writes counts the condition writes made (for the scale test).
	Writes atomic.Int64
}

// Reconcile looks at one Service.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var svc corev1.Service
	if err := r.Client.Get(ctx, req.NamespacedName, &svc); err != nil {
		if apierrors.IsNotFound(err) {
			return reconcile.Result{}, nil // its conditions went with it
		}
		return reconcile.Result{}, fmt.Errorf("reading Service %s: %w", req, err)
	}
	var want *servicecondition.Want
	if config.ServesService(&svc, r.LBClass) {
		if len(svc.Status.LoadBalancer.Ingress) == 0 && servicecondition.Find(&svc, barelbv1beta1.ConditionAddressAssigned) == nil {
			// The allocation reconciler has not looked at it yet; its
			// write brings the Service back here. Saying NoAddress now
			// would be one more write per new Service.
			return reconcile.Result{}, nil
		}
		in, err := r.read(ctx, &svc)
		if err != nil {
			return reconcile.Result{}, err
		}
		w := Decide(in)
		want = &w
	}
	wrote, err := servicecondition.Write(ctx, r.Client, &svc, barelbv1beta1.ConditionAnnounced, want, time.Now())
	if wrote {
		r.Writes.Add(1)
	}
	return reconcile.Result{}, err
}

// read gathers the verdict's input for svc.
func (r *Reconciler) read(ctx context.Context, svc *corev1.Service) (Input, error) {
	key := client.ObjectKeyFromObject(svc).String()
	in := Input{
		PoolName: svc.Annotations[config.AnnotationAllocatedFromPool],
		Labels:   labels.Set(svc.Labels),
		Local:    svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
	}
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if ip, err := netip.ParseAddr(ing.IP); err == nil {
			in.Addresses = append(in.Addresses, ip)
		}
	}
	if len(in.Addresses) == 0 {
		return in, nil // nothing else matters
	}
	// Everything below is read from the cache and only read.
	ro := client.UnsafeDisableDeepCopy
	ns := client.InNamespace(r.Namespace)

	if in.PoolName != "" {
		var obj barelbv1beta1.IPAddressPool
		err := r.Client.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: in.PoolName}, &obj)
		switch {
		case err == nil:
			// The definition the speakers use: the last valid one while
			// the controller refuses an edit.
			in.Pool, _ = config.PoolInForce(&obj)
		case !apierrors.IsNotFound(err):
			return in, fmt.Errorf("reading IPAddressPool %s: %w", in.PoolName, err)
		}
	}
	if in.Pool == nil {
		return in, nil
	}

	var l2advs barelbv1beta1.L2AdvertisementList
	if err := r.Client.List(ctx, &l2advs, ns, ro); err != nil {
		return in, fmt.Errorf("listing L2Advertisements: %w", err)
	}
	for i := range l2advs.Items {
		if a, err := config.L2AdvertisementFromAPI(&l2advs.Items[i]); err == nil {
			in.L2Advertisements = append(in.L2Advertisements, a)
		}
	}
	var bgpadvs barelbv1beta1.BGPAdvertisementList
	if err := r.Client.List(ctx, &bgpadvs, ns, ro); err != nil {
		return in, fmt.Errorf("listing BGPAdvertisements: %w", err)
	}
	if len(bgpadvs.Items) > 0 {
		// An advertisement the speakers refuse (an unknown community
		// name among them) covers nothing, for them as here.
		var communities barelbv1beta1.CommunityList
		if err := r.Client.List(ctx, &communities, ns, ro); err != nil {
			return in, fmt.Errorf("listing Communities: %w", err)
		}
		aliases, _ := config.CommunityAliases(communities.Items)
		for i := range bgpadvs.Items {
			if a, err := config.BGPAdvertisementFromAPI(&bgpadvs.Items[i], aliases); err == nil {
				in.BGPAdvertisements = append(in.BGPAdvertisements, a)
			}
		}
	}
	if len(in.BGPAdvertisements) > 0 {
		var peers barelbv1beta1.BGPPeerList
		if err := r.Client.List(ctx, &peers, ns, ro); err != nil {
			return in, fmt.Errorf("listing BGPPeers: %w", err)
		}
		var profiles barelbv1beta1.BFDProfileList
		if err := r.Client.List(ctx, &profiles, ns, ro); err != nil {
			return in, fmt.Errorf("listing BFDProfiles: %w", err)
		}
		names := map[string]bool{}
		for i := range profiles.Items {
			names[profiles.Items[i].Name] = true
		}
		for i := range peers.Items {
			if p, err := config.BGPPeerFromAPI(&peers.Items[i], config.BGPPeerOptions{BFDProfiles: names}); err == nil {
				in.Peers = append(in.Peers, p)
			}
		}
	}

	nodes, err := r.nodes(ctx)
	if err != nil {
		return in, err
	}
	in.Nodes = nodes

	if in.Local {
		if in.EndpointNodes, err = r.endpointNodes(ctx, svc.Namespace, key); err != nil {
			return in, err
		}
	}
	shared, err := r.sharing(ctx, svc)
	if err != nil {
		return in, err
	}
	for _, other := range shared {
		if other.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
			continue
		}
		otherKey := client.ObjectKeyFromObject(other).String()
		nodes, err := r.endpointNodes(ctx, other.Namespace, otherKey)
		if err != nil {
			return in, err
		}
		in.SharedLocal = append(in.SharedLocal, SharedService{Name: otherKey, EndpointNodes: nodes})
	}

	var l2 barelbv1beta1.ServiceL2StatusList
	if err := r.Client.List(ctx, &l2, ns, client.MatchingFields{indexService: key}, ro); err != nil {
		return in, fmt.Errorf("listing the ServiceL2Statuses of %s: %w", key, err)
	}
	for i := range l2.Items {
		st := l2.Items[i].Status
		if st.Node == "" {
			continue
		}
		rep := &L2Report{Node: st.Node, Addresses: st.Addresses}
		for _, ifc := range st.Interfaces {
			rep.Interfaces = append(rep.Interfaces, ifc.Name)
		}
		in.L2 = rep
		break // one per Service
	}
	var bgp barelbv1beta1.ServiceBGPStatusList
	if err := r.Client.List(ctx, &bgp, ns, client.MatchingFields{indexService: key}, ro); err != nil {
		return in, fmt.Errorf("listing the ServiceBGPStatuses of %s: %w", key, err)
	}
	for i := range bgp.Items {
		st := bgp.Items[i].Status
		if st.Node != "" && len(st.Peers) > 0 {
			in.BGP = append(in.BGP, BGPReport{Node: st.Node, Peers: st.Peers})
		}
	}
	return in, nil
}

// nodes reads the nodes and what their speakers' Leases say.
func (r *Reconciler) nodes(ctx context.Context) ([]Node, error) {
	var leases coordinationv1.LeaseList
	if err := r.Leases.List(ctx, &leases, client.InNamespace(r.Namespace),
		client.MatchingLabels{heartbeat.LabelComponent: heartbeat.ComponentSpeaker}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing the speakers' Leases: %w", err)
	}
	speakers := map[string]map[string]bool{}
	running := map[string]bool{}
	for i := range leases.Items {
		l := &leases.Items[i]
		if l.Spec.HolderIdentity == nil {
			continue
		}
		node := *l.Spec.HolderIdentity
		running[node] = true
		if v, ok := l.Annotations[heartbeat.AnnotationBGPEstablished]; ok {
			up := map[string]bool{}
			for _, p := range strings.Split(v, ",") {
				if p != "" {
					up[p] = true
				}
			}
			speakers[node] = up
		}
	}
	var list corev1.NodeList
	if err := r.Client.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing Nodes: %w", err)
	}
	out := make([]Node, 0, len(list.Items))
	for i := range list.Items {
		n := &list.Items[i]
		_, excluded := n.Labels[excludeLabel]
		out = append(out, Node{
			Name: n.Name, Labels: labels.Set(n.Labels),
			Ready:      nodeCondition(n, corev1.NodeReady) == corev1.ConditionTrue,
			Excluded:   excluded || nodeCondition(n, corev1.NodeNetworkUnavailable) == corev1.ConditionTrue,
			Speaker:    running[n.Name],
			SessionsUp: speakers[n.Name],
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func nodeCondition(n *corev1.Node, t corev1.NodeConditionType) corev1.ConditionStatus {
	for _, c := range n.Status.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return corev1.ConditionUnknown
}

// readyNodes names the nodes with a ready endpoint (an endpoint whose
// ready condition is unset counts as ready, as the API says).
// endpointNodes are the nodes with a ready endpoint of the Service key.
func (r *Reconciler) endpointNodes(ctx context.Context, namespace, key string) (map[string]bool, error) {
	var slices discoveryv1.EndpointSliceList
	if err := r.Client.List(ctx, &slices, client.InNamespace(namespace), client.MatchingFields{indexService: key}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing the EndpointSlices of %s: %w", key, err)
	}
	return readyNodes(slices.Items), nil
}

// sharing lists the other Services barelb serves whose status holds one
// of svc's addresses, in name order.
func (r *Reconciler) sharing(ctx context.Context, svc *corev1.Service) ([]*corev1.Service, error) {
	self := client.ObjectKeyFromObject(svc)
	on, err := r.onAddresses(ctx, serviceAddresses(svc))
	if err != nil {
		return nil, err
	}
	var out []*corev1.Service
	for _, other := range on {
		if client.ObjectKeyFromObject(other) != self && config.ServesService(other, r.LBClass) {
			out = append(out, other)
		}
	}
	return out, nil
}

// onAddresses lists the Services whose status holds one of ips, in name
// order, each once. They are the cache's own objects: read, never
// written.
func (r *Reconciler) onAddresses(ctx context.Context, ips []string) ([]*corev1.Service, error) {
	seen := map[client.ObjectKey]bool{}
	var out []*corev1.Service
	for _, ip := range ips {
		var list corev1.ServiceList
		if err := r.Client.List(ctx, &list, client.MatchingFields{indexAddress: ip}, client.UnsafeDisableDeepCopy); err != nil {
			return nil, fmt.Errorf("listing the Services on %s: %w", ip, err)
		}
		for i := range list.Items {
			if k := client.ObjectKeyFromObject(&list.Items[i]); !seen[k] {
				seen[k] = true
				out = append(out, &list.Items[i])
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return client.ObjectKeyFromObject(out[i]).String() < client.ObjectKeyFromObject(out[j]).String()
	})
	return out, nil
}

// serviceAddresses are the addresses in a LoadBalancer Service's status
// (the index of indexAddress).
func serviceAddresses(o client.Object) []string {
	svc, ok := o.(*corev1.Service)
	if !ok || svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return nil
	}
	var out []string
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if ing.IP != "" {
			out = append(out, ing.IP)
		}
	}
	return out
}

func readyNodes(slices []discoveryv1.EndpointSlice) map[string]bool {
	out := map[string]bool{}
	for i := range slices {
		for _, ep := range slices[i].Endpoints {
			if ep.NodeName != nil && (ep.Conditions.Ready == nil || *ep.Conditions.Ready) {
				out[*ep.NodeName] = true
			}
		}
	}
	return out
}
