package speakerglue

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

// NodeAddress finds a node's InternalIP, IPv4 first.
func NodeAddress(ctx context.Context, c client.Reader, name string) (netip.Addr, error) {
	var node corev1.Node
	if err := c.Get(ctx, client.ObjectKey{Name: name}, &node); err != nil {
		return netip.Addr{}, fmt.Errorf("reading node %s: %w", name, err)
	}
	var best netip.Addr
	for _, a := range node.Status.Addresses {
		ip, err := netip.ParseAddr(a.Address)
		if a.Type != corev1.NodeInternalIP || err != nil {
			continue
		}
		if !best.IsValid() || (ip.Is4() && !best.Is4()) {
			best = ip
		}
	}
	if !best.IsValid() {
		return netip.Addr{}, fmt.Errorf("node %s has no InternalIP address", name)
	}
	return best, nil
}

// ContentChanged lets through every event but an update that changes
// nothing the cache holds besides the resource version: a Node's
// heartbeat, once the cache has trimmed what the speaker does not read
// (CacheTransforms).
// The plan is computed from the cache alone, so such an update cannot
// change it, and at 10,000 Services a plan costs real time.
func ContentChanged() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		if e.ObjectOld == nil || e.ObjectNew == nil {
			return true
		}
		old, ok := e.ObjectOld.DeepCopyObject().(client.Object)
		if !ok {
			return true
		}
		old.SetResourceVersion(e.ObjectNew.GetResourceVersion())
		old.SetManagedFields(e.ObjectNew.GetManagedFields())
		return !equality.Semantic.DeepEqual(old, e.ObjectNew)
	}}
}

// NodeCondition is the status of the node's condition of type t;
// Unknown when the node does not report it.
func NodeCondition(n *corev1.Node, t corev1.NodeConditionType) corev1.ConditionStatus {
	for _, c := range n.Status.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return corev1.ConditionUnknown
}
