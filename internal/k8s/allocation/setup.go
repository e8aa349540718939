package allocation

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/k8s/controllerglue"
	"github.com/barelb/barelb/internal/metrics"
)

// Options configure the allocation controllers.
type Options struct {
	// Namespace holds the configuration that counts.
	Namespace string
	// LoadBalancerClass is the class served; "" serves Services without one.
	LoadBalancerClass string
	// Workers is how many Services are reconciled at once. The decision is
	// serialized and fast; workers overlap the API writes.
	Workers int
	// PoolStatusDelay gathers changes to a pool's counts into one write.
	PoolStatusDelay time.Duration
	Metrics         *metrics.Controller
}

// Setup adds the Service and IPAddressPool reconcilers to mgr.
func Setup(mgr ctrl.Manager, o Options) error {
	if o.Workers <= 0 {
		o.Workers = 16
	}
	if o.PoolStatusDelay <= 0 {
		o.PoolStatusDelay = 500 * time.Millisecond
	}
	log := mgr.GetLogger().WithName("allocation")
	st := newState(mgr.GetClient(), mgr.GetAPIReader(), o.Namespace, o.LoadBalancerClass, log, o.Metrics)
	poolChanged := make(chan event.GenericEvent, 1024)
	retry := make(chan event.GenericEvent, 1024)

	services := &serviceReconciler{
		client: mgr.GetClient(), state: st, poolChanged: poolChanged, retry: retry,
		recorder: mgr.GetEventRecorderFor("barelb-controller"),
	}
	err := ctrl.NewControllerManagedBy(mgr).
		Named("service-allocation").
		For(&corev1.Service{}).
		Watches(&barelbv1beta1.IPAddressPool{}, handler.EnqueueRequestsFromMapFunc(allServices(mgr.GetClient())),
			// Only spec changes matter; the pool's own status writes must
			// not send every Service round again.
			builder.WithPredicates(controllerglue.InNamespace(o.Namespace), predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(servicesIn(mgr.GetClient())),
			builder.WithPredicates(labelsChanged())).
		WatchesRawSource(source.Channel(retry, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: o.Workers}).
		Complete(services)
	if err != nil {
		return fmt.Errorf("setting up the Service reconciler: %w", err)
	}

	pools := &poolReconciler{client: mgr.GetClient(), state: st, recorder: mgr.GetEventRecorderFor("barelb-controller")}
	delay := o.PoolStatusDelay
	err = ctrl.NewControllerManagedBy(mgr).
		Named("ipaddresspool-status").
		For(&barelbv1beta1.IPAddressPool{}).
		WatchesRawSource(source.Channel(poolChanged, handler.Funcs{
			GenericFunc: func(_ context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				// Many Services change at once during a burst; their
				// pool's status is written once per delay, not per Service.
				q.AddAfter(reconcile.Request{NamespacedName: client.ObjectKeyFromObject(e.Object)}, delay)
			},
		})).
		Complete(pools)
	if err != nil {
		return fmt.Errorf("setting up the IPAddressPool reconciler: %w", err)
	}
	return nil
}

// allServices enqueues every LoadBalancer Service: a pool edit may move or
// free any of them.
func allServices(c client.Client) handler.MapFunc {
	return func(ctx context.Context, _ client.Object) []reconcile.Request {
		return controllerglue.LoadBalancerServices(ctx, c)
	}
}

// servicesIn enqueues the LoadBalancer Services of a namespace whose labels
// changed, for pools that select namespaces by label.
func servicesIn(c client.Client) handler.MapFunc {
	return func(ctx context.Context, ns client.Object) []reconcile.Request {
		return controllerglue.LoadBalancerServices(ctx, c, client.InNamespace(ns.GetName()))
	}
}

// labelsChanged passes namespace updates that change labels; a new
// namespace has no Services yet and a deleted one takes them along.
func labelsChanged() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			return !equality.Semantic.DeepEqual(e.ObjectOld.GetLabels(), e.ObjectNew.GetLabels())
		},
	}
}
