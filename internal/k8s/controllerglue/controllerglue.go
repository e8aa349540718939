package controllerglue

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// LoadBalancerServices lists the Services of type LoadBalancer (narrowed
// by opts) as reconcile requests: what a change to a pool, an
// advertisement or a node may affect. A failed list is logged and
// enqueues nothing; the next change or resync tries again.
func LoadBalancerServices(ctx context.Context, c client.Reader, opts ...client.ListOption) []reconcile.Request {
	var list corev1.ServiceList
	// Only the type and the key are read: the cache's objects need no copy.
	if err := c.List(ctx, &list, append([]client.ListOption{client.UnsafeDisableDeepCopy}, opts...)...); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing Services to reconcile")
		return nil
	}
	var out []reconcile.Request
	for i := range list.Items {
		if list.Items[i].Spec.Type == corev1.ServiceTypeLoadBalancer {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
	}
	return out
}

// InNamespace passes the objects of namespace ns: barelb reads its
// configuration objects from its own namespace only.
func InNamespace(ns string) predicate.Predicate {
	return predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetNamespace() == ns })
}
