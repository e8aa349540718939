package compare

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/barelb/barelb/e2etest/lab"
)

// The two APIs have the same shape (barelb took MetalLB's), so one
// description of the configuration serves both: only the group, the
// namespace and BGPPeer's version differ.

// object builds a configuration object of impl's API group.
func object(impl implementation, kind, name string, spec map[string]any) *unstructured.Unstructured {
	version := "v1beta1"
	if kind == "BGPPeer" {
		version = impl.BGPPeerVersion()
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": impl.Group() + "/" + version,
		"kind":       kind,
		"metadata":   map[string]any{"name": name, "namespace": impl.Namespace()},
		"spec":       spec,
	}}
	return u
}

// l2Objects: the lab's LAN pool, announced in layer 2.
func l2Objects(impl implementation) []*unstructured.Unstructured {
	return []*unstructured.Unstructured{
		object(impl, "IPAddressPool", "lan", map[string]any{"addresses": []any{
			"198.51.100.200-198.51.100.239", "2001:db8:100::200-2001:db8:100::239"}}),
		object(impl, "L2Advertisement", "lan", map[string]any{"ipAddressPools": []any{"lan"}}),
	}
}

// bgpHoldTime is both implementations' BGP hold time here, without BFD: a
// dead node's routes go at hold time. The keepalive time is left to both
// (a third of the hold time): MetalLB's native mode refuses
// keepaliveTime ("has keepalive-time set on native bgp mode").
const bgpHoldTime = "9s"

// bgpObjects: a pool routed behind the router, advertised to the lab's
// FRR router from every node.
func bgpObjects(impl implementation) []*unstructured.Unstructured {
	return []*unstructured.Unstructured{
		object(impl, "IPAddressPool", "routed", map[string]any{"addresses": []any{"203.0.113.128/26"}}),
		object(impl, "BGPPeer", "router", map[string]any{
			"myASN": int64(lab.NodeASN), "peerASN": int64(lab.RouterASN), "peerAddress": "203.0.113.1",
			"holdTime": bgpHoldTime}),
		object(impl, "BGPAdvertisement", "routed", map[string]any{"ipAddressPools": []any{"routed"}}),
	}
}

// scalePool is the allocation scenario's /16, announced by nobody (no
// advertisement selects it; no traffic goes to it): RFC 6598's shared
// range, which neither the lab nor this machine uses.
const scalePoolRange = "100.64.0.0/16"

func scaleObjects(impl implementation) []*unstructured.Unstructured {
	return []*unstructured.Unstructured{
		object(impl, "IPAddressPool", "scale", map[string]any{"addresses": []any{scalePoolRange}}),
	}
}

func apply(ctx context.Context, l *lab.Lab, objs []*unstructured.Unstructured) error {
	for _, o := range objs {
		if err := l.Client().Create(ctx, o.DeepCopy()); err != nil {
			return fmt.Errorf("creating %s %s: %w", o.GetKind(), o.GetName(), err)
		}
	}
	return nil
}

func remove(ctx context.Context, l *lab.Lab, objs []*unstructured.Unstructured) error {
	for _, o := range objs {
		if err := l.Client().Delete(ctx, o.DeepCopy()); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting %s %s: %w", o.GetKind(), o.GetName(), err)
		}
	}
	return nil
}

// l2StatusNodes lists the nodes that impl's ServiceL2Statuses name for
// Service default/name (status.serviceName, status.node: the same fields
// in both APIs).
func l2StatusNodes(ctx context.Context, l *lab.Lab, impl implementation, name string) ([]string, error) {
	list := &unstructured.UnstructuredList{}
	list.SetAPIVersion(impl.Group() + "/v1beta1")
	list.SetKind("ServiceL2StatusList")
	if err := l.Client().List(ctx, list, client.InNamespace(impl.Namespace())); err != nil {
		return nil, fmt.Errorf("listing %s ServiceL2Statuses: %w", impl.Group(), err)
	}
	var nodes []string
	for _, s := range list.Items {
		svc, _, _ := unstructured.NestedString(s.Object, "status", "serviceName")
		ns, _, _ := unstructured.NestedString(s.Object, "status", "serviceNamespace")
		node, _, _ := unstructured.NestedString(s.Object, "status", "node")
		if svc == name && (ns == "" || ns == "default") {
			nodes = append(nodes, node)
		}
	}
	return nodes, nil
}
