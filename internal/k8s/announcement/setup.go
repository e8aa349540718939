package announcement

import (
	"context"
	"fmt"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/k8s/controllerglue"
	"github.com/barelb/barelb/internal/k8s/heartbeat"
)

// Options configure the announcement reconciler.
type Options struct {
	// Namespace holds barelb's configuration, the speakers' statuses and
	// their Leases.
	Namespace string
	// LoadBalancerClass is the class served; "" serves Services without one.
	LoadBalancerClass string
	// Delay gathers the changes to a Service (its statuses, endpoints,
	// the configuration) for this long before it is looked at, so that a
	// burst writes each Service's condition once. Default 500ms.
	Delay time.Duration
	// Workers is how many Services are looked at once. Default 4.
	Workers int
}

// Setup adds the announcement reconciler to mgr and returns it.
func Setup(ctx context.Context, mgr ctrl.Manager, o Options) (*Reconciler, error) {
	if o.Delay <= 0 {
		o.Delay = 500 * time.Millisecond
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	// The speakers' Leases, in a cache of their own: the manager's would
	// watch every Lease of the cluster, the nodes' renewed every 10 s
	// among them.
	leases, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(),
		DefaultNamespaces: map[string]cache.Config{o.Namespace: {}},
		DefaultTransform:  cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&coordinationv1.Lease{}: {Label: labels.SelectorFromSet(labels.Set{heartbeat.LabelComponent: heartbeat.ComponentSpeaker})},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("making the speakers' Lease cache: %w", err)
	}
	if err := mgr.Add(leases); err != nil {
		return nil, fmt.Errorf("adding the speakers' Lease cache: %w", err)
	}
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &barelbv1beta1.ServiceL2Status{}, indexService, func(o client.Object) []string {
		st := o.(*barelbv1beta1.ServiceL2Status)
		return []string{statusService(st.Labels, st.Status.ServiceNamespace, st.Status.ServiceName)}
	}); err != nil {
		return nil, fmt.Errorf("indexing ServiceL2Statuses: %w", err)
	}
	if err := idx.IndexField(ctx, &barelbv1beta1.ServiceBGPStatus{}, indexService, func(o client.Object) []string {
		st := o.(*barelbv1beta1.ServiceBGPStatus)
		return []string{statusService(st.Labels, st.Status.ServiceNamespace, st.Status.ServiceName)}
	}); err != nil {
		return nil, fmt.Errorf("indexing ServiceBGPStatuses: %w", err)
	}
	if err := idx.IndexField(ctx, &discoveryv1.EndpointSlice{}, indexService, func(o client.Object) []string {
		if name := o.GetLabels()[discoveryv1.LabelServiceName]; name != "" {
			return []string{o.GetNamespace() + "/" + name}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("indexing EndpointSlices: %w", err)
	}
	if err := idx.IndexField(ctx, &corev1.Service{}, indexAddress, serviceAddresses); err != nil {
		return nil, fmt.Errorf("indexing Services by address: %w", err)
	}

	r := &Reconciler{Client: mgr.GetClient(), Leases: leases, Namespace: o.Namespace, LBClass: o.LoadBalancerClass}
	c := mgr.GetClient()
	later := func(f func(context.Context, client.Object) []reconcile.Request) handler.EventHandler {
		return delayed(o.Delay, f)
	}
	everyService := later(func(ctx context.Context, _ client.Object) []reconcile.Request {
		return controllerglue.LoadBalancerServices(ctx, c)
	})
	ofStatus := later(func(_ context.Context, obj client.Object) []reconcile.Request {
		var key string
		switch st := obj.(type) {
		case *barelbv1beta1.ServiceL2Status:
			key = statusService(st.Labels, st.Status.ServiceNamespace, st.Status.ServiceName)
		case *barelbv1beta1.ServiceBGPStatus:
			key = statusService(st.Labels, st.Status.ServiceNamespace, st.Status.ServiceName)
		}
		return request(key)
	})
	// A Service and those sharing an address with it: with
	// externalTrafficPolicy Local, the verdict on each depends on the
	// others' endpoints.
	withSharing := func(ctx context.Context, svc *corev1.Service) []reconcile.Request {
		reqs := []reconcile.Request{{NamespacedName: client.ObjectKeyFromObject(svc)}}
		// The cache fails a listing by index only when the index is
		// missing, which Setup rules out above.
		on, _ := r.onAddresses(ctx, serviceAddresses(svc))
		for _, other := range on {
			if k := client.ObjectKeyFromObject(other); k != reqs[0].NamespacedName {
				reqs = append(reqs, reconcile.Request{NamespacedName: k})
			}
		}
		return reqs
	}
	ofSlice := later(func(ctx context.Context, obj client.Object) []reconcile.Request {
		name := obj.GetLabels()[discoveryv1.LabelServiceName]
		if name == "" {
			return nil
		}
		svc := &corev1.Service{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: obj.GetNamespace(), Name: name}, svc); err != nil {
			svc.Namespace, svc.Name = obj.GetNamespace(), name
		}
		return withSharing(ctx, svc)
	})
	inNS := builder.WithPredicates(controllerglue.InNamespace(o.Namespace))
	err = ctrl.NewControllerManagedBy(mgr).
		Named("service-announced").
		// Services through the same delay: the allocation reconciler's
		// write of a new address lands before the Service is looked at.
		Watches(&corev1.Service{}, later(func(ctx context.Context, obj client.Object) []reconcile.Request {
			if svc, ok := obj.(*corev1.Service); ok {
				return withSharing(ctx, svc)
			}
			return []reconcile.Request{{NamespacedName: client.ObjectKeyFromObject(obj)}}
		}), builder.WithPredicates(serviceChanged())).
		Watches(&barelbv1beta1.ServiceL2Status{}, ofStatus, inNS).
		Watches(&barelbv1beta1.ServiceBGPStatus{}, ofStatus, inNS).
		Watches(&discoveryv1.EndpointSlice{}, ofSlice).
		Watches(&corev1.Node{}, everyService, builder.WithPredicates(nodeChanged())).
		Watches(&barelbv1beta1.IPAddressPool{}, everyService, inNS, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&barelbv1beta1.L2Advertisement{}, everyService, inNS).
		Watches(&barelbv1beta1.BGPAdvertisement{}, everyService, inNS).
		Watches(&barelbv1beta1.BGPPeer{}, everyService, inNS).
		Watches(&barelbv1beta1.Community{}, everyService, inNS).
		Watches(&barelbv1beta1.BFDProfile{}, everyService, inNS).
		WatchesRawSource(source.Kind(leases, client.Object(&coordinationv1.Lease{}), everyService, leaseChanged())).
		WithOptions(controller.Options{MaxConcurrentReconciles: o.Workers}).
		Complete(r)
	if err != nil {
		return nil, fmt.Errorf("setting up the announcement reconciler: %w", err)
	}
	return r, nil
}

// statusService is the Service a speaker's status is about.
func statusService(l map[string]string, namespace, name string) string {
	if namespace == "" || name == "" {
		namespace, name = l[barelbv1beta1.LabelServiceNamespace], l[barelbv1beta1.LabelServiceName]
	}
	if namespace == "" || name == "" {
		return ""
	}
	return namespace + "/" + name
}

func request(key string) []reconcile.Request {
	if key == "" {
		return nil
	}
	ns, name, _ := strings.Cut(key, "/")
	return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: ns, Name: name}}}
}

// delayed enqueues what f maps an object to after delay: the queue keeps
// one entry per Service, so everything that happens to it meanwhile is
// looked at once.
func delayed(delay time.Duration, f func(context.Context, client.Object) []reconcile.Request) handler.EventHandler {
	add := func(ctx context.Context, obj client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		if obj == nil {
			return
		}
		for _, req := range f(ctx, obj) {
			q.AddAfter(req, delay)
		}
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, e.Object, q)
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, e.ObjectNew, q)
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, e.Object, q)
		},
		GenericFunc: func(ctx context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, e.Object, q)
		},
	}
}

// serviceChanged passes the Service updates the verdict may depend on:
// not the writes of its own condition (nor of AddressAssigned), which
// would make every write come back as a reconcile.
func serviceChanged() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		a, ok1 := e.ObjectOld.(*corev1.Service)
		b, ok2 := e.ObjectNew.(*corev1.Service)
		if !ok1 || !ok2 {
			return true
		}
		// Services have no metadata.generation: the spec is compared.
		return !equality.Semantic.DeepEqual(a.Spec, b.Spec) ||
			!equality.Semantic.DeepEqual(a.Labels, b.Labels) ||
			!equality.Semantic.DeepEqual(a.Annotations, b.Annotations) ||
			!equality.Semantic.DeepEqual(a.Status.LoadBalancer, b.Status.LoadBalancer) ||
			!equality.Semantic.DeepEqual(a.Status.Conditions, b.Status.Conditions) && announcedChanged(a, b)
	}}
}

// announcedChanged tells an update that touched the Announced condition
// itself (someone else wrote or removed it: it is written back), or made
// the AddressAssigned condition appear (the allocation reconciler has
// looked at a Service that got no address).
func announcedChanged(a, b *corev1.Service) bool {
	find := func(s *corev1.Service, typ string) string {
		for _, c := range s.Status.Conditions {
			if c.Type == typ {
				return string(c.Status) + "/" + c.Reason + "/" + c.Message
			}
		}
		return ""
	}
	return find(a, barelbv1beta1.ConditionAnnounced) != find(b, barelbv1beta1.ConditionAnnounced) ||
		(find(a, barelbv1beta1.ConditionAddressAssigned) == "") != (find(b, barelbv1beta1.ConditionAddressAssigned) == "")
}

// nodeChanged passes node changes that matter here: labels, Ready and
// NetworkUnavailable, not the kubelet's heartbeats.
func nodeChanged() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		a, ok1 := e.ObjectOld.(*corev1.Node)
		b, ok2 := e.ObjectNew.(*corev1.Node)
		if !ok1 || !ok2 {
			return true
		}
		return !equality.Semantic.DeepEqual(a.Labels, b.Labels) ||
			nodeCondition(a, corev1.NodeReady) != nodeCondition(b, corev1.NodeReady) ||
			nodeCondition(a, corev1.NodeNetworkUnavailable) != nodeCondition(b, corev1.NodeNetworkUnavailable)
	}}
}

// leaseChanged passes a speaker's Lease appearing, going, or changing what
// it says (not its renewals every few seconds).
func leaseChanged() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return !equality.Semantic.DeepEqual(e.ObjectOld.GetAnnotations()[heartbeat.AnnotationBGPEstablished], e.ObjectNew.GetAnnotations()[heartbeat.AnnotationBGPEstablished])
	}}
}
