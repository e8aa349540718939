package advertiser

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
)

// Labels of ServiceBGPStatus objects: the Service's (the same as the
// layer-2 statuses') and the node's, by which each speaker caches only its
// own statuses.
const (
	LabelServiceName      = "barelb.io/service-name"
	LabelServiceNamespace = "barelb.io/service-namespace"
	LabelNode             = "barelb.io/node"
)

// statusName is the name of the ServiceBGPStatus of a Service and node:
// readable, and unique thanks to a hash of both.
func statusName(node, namespace, name string) string {
	sum := sha256.Sum256([]byte(node + "/" + namespace + "/" + name))
	base := node + "-" + namespace + "-" + name
	if len(base) > 40 {
		base = base[:40]
	}
	return strings.TrimRight(base, "-.") + "-" + hex.EncodeToString(sum[:4])
}

// statusSays tells whether a status is what the node would write for a
// Service advertised to peers (sorted).
func statusSays(st barelbv1beta1.ServiceBGPStatusStatus, node, namespace, name string, peers []string) bool {
	if st.Node != node || st.ServiceNamespace != namespace || st.ServiceName != name || len(st.Peers) != len(peers) {
		return false
	}
	for i := range peers {
		if st.Peers[i] != peers[i] {
			return false
		}
	}
	return true
}

// statusChanges compares the wanted statuses (Service key → peers) with
// this node's existing ones (by name) and returns what to write and what
// to delete.
func statusChanges(node string, want map[string][]string, existing map[string]*barelbv1beta1.ServiceBGPStatus) (write []string, drop []*barelbv1beta1.ServiceBGPStatus) {
	wanted := map[string]bool{}
	for key, peers := range want {
		ns, name, _ := strings.Cut(key, "/")
		sname := statusName(node, ns, name)
		wanted[sname] = true
		if cur := existing[sname]; cur != nil && statusSays(cur.Status, node, ns, name, peers) {
			continue
		}
		write = append(write, key)
	}
	for sname, cur := range existing {
		if !wanted[sname] {
			drop = append(drop, cur)
		}
	}
	return write, drop
}

// writeStatus makes the ServiceBGPStatus of a Service say this node
// advertises it to peers; cached is the object in the cache or nil.
func writeStatus(ctx context.Context, c client.Client, namespace, node, key string, peers []string, cached *barelbv1beta1.ServiceBGPStatus) error {
	svcNS, svcName, _ := strings.Cut(key, "/")
	obj := &barelbv1beta1.ServiceBGPStatus{ObjectMeta: metav1.ObjectMeta{
		Name: statusName(node, svcNS, svcName), Namespace: namespace,
		Labels: map[string]string{LabelServiceName: svcName, LabelServiceNamespace: svcNS, LabelNode: node},
	}}
	if cached == nil {
		if err := c.Create(ctx, obj); err != nil {
			return fmt.Errorf("creating the ServiceBGPStatus of %s: %w", key, err)
		}
	} else {
		obj.ResourceVersion = cached.ResourceVersion
	}
	obj.Status = barelbv1beta1.ServiceBGPStatusStatus{Node: node, ServiceName: svcName, ServiceNamespace: svcNS, Peers: peers}
	if err := c.Status().Update(ctx, obj); err != nil {
		return fmt.Errorf("writing the ServiceBGPStatus of %s: %w", key, err)
	}
	return nil
}

// dropStatus deletes a status this node no longer stands behind. The
// resource version guards against deleting a write the cache has not seen
// (a conflict: look again).
func dropStatus(ctx context.Context, c client.Client, cached *barelbv1beta1.ServiceBGPStatus) error {
	obj := &barelbv1beta1.ServiceBGPStatus{ObjectMeta: metav1.ObjectMeta{Name: cached.Name, Namespace: cached.Namespace}}
	err := c.Delete(ctx, obj, client.Preconditions{ResourceVersion: &cached.ResourceVersion})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting ServiceBGPStatus %s: %w", cached.Name, err)
	}
	return nil
}

// isStale tells a write refused because the cache had not seen the latest
// version yet.
func isStale(err error) bool {
	return err != nil && (apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err))
}
