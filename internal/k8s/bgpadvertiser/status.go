package bgpadvertiser

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/go-logr/logr"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/k8s/statuswrite"
)

// LabelNode names the node of a ServiceBGPStatus (besides the Service's
// labels, barelbv1beta1.LabelServiceName and barelbv1beta1.LabelServiceNamespace), by
// which each speaker caches only its own statuses.
const LabelNode = "barelb.io/node"

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
		Labels: map[string]string{barelbv1beta1.LabelServiceName: svcName, barelbv1beta1.LabelServiceNamespace: svcNS, LabelNode: node},
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

// statusWriter writes this node's ServiceBGPStatus objects in the
// background: one per Service the node advertises, naming the peers; the
// node's others are deleted. Only differences from the cache are written,
// by a few workers at once (at 10,000 Services a node has 20,000 writes to
// make when it starts). The latest wish wins: a newer one set while
// writing is taken up as soon as the writes under way are done.
type statusWriter struct {
	client    client.Client
	own       client.Reader // the advertiser's cache of this node's statuses
	node      string
	namespace string
	workers   int

	loop statuswrite.Loop[map[string][]string]
	done chan struct{} // closed when run returns
}

func newStatusWriter(c client.Client, own client.Reader, log logr.Logger, node, namespace string) *statusWriter {
	w := &statusWriter{client: c, own: own, node: node, namespace: namespace, workers: 8, done: make(chan struct{})}
	w.loop = statuswrite.Loop[map[string][]string]{Pass: w.write, Log: log, What: "ServiceBGPStatuses"}
	return w
}

// set replaces what the statuses must say (Service key → sorted peers).
func (w *statusWriter) set(want map[string][]string) { w.loop.Set(want) }

// run writes until ctx ends.
func (w *statusWriter) run(ctx context.Context) {
	defer close(w.done)
	w.loop.Run(ctx)
}

// write makes one pass; again is set when a write met a stale cache.
func (w *statusWriter) write(ctx context.Context, want map[string][]string) (again bool, err error) {
	// The cache holds this node's statuses only (its label selector; the
	// cached objects carry no labels, see slimBGPStatus), read in place
	// rather than copied: 10,000 copies per pass were the largest
	// short-lived allocation of a speaker writing statuses.
	var list barelbv1beta1.ServiceBGPStatusList
	if err := w.own.List(ctx, &list, client.InNamespace(w.namespace), client.UnsafeDisableDeepCopy); err != nil {
		return false, fmt.Errorf("listing ServiceBGPStatuses: %w", err)
	}
	existing := make(map[string]*barelbv1beta1.ServiceBGPStatus, len(list.Items))
	for i := range list.Items {
		existing[list.Items[i].Name] = &list.Items[i]
	}
	write, drop := statusChanges(w.node, want, existing)
	jobs := make(chan func() error)
	var (
		wg    sync.WaitGroup
		emu   sync.Mutex
		errs  []error
		stale bool
	)
	for i := 0; i < w.workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for job := range jobs {
				err := job()
				emu.Lock()
				if isStale(err) {
					stale = true
				} else if err != nil {
					errs = append(errs, err)
				}
				emu.Unlock()
			}
		}()
	}
	for _, key := range write {
		ns, name, _ := strings.Cut(key, "/")
		cached := existing[statusName(w.node, ns, name)]
		peers := want[key]
		jobs <- func() error { return writeStatus(ctx, w.client, w.namespace, w.node, key, peers, cached) }
	}
	for _, st := range drop {
		jobs <- func() error { return dropStatus(ctx, w.client, st) }
	}
	close(jobs)
	wg.Wait()
	return stale, errors.Join(errs...)
}

// clear deletes every status of this node in one request, once run has
// returned (or ctx ends): a stopping speaker advertises nothing.
func (w *statusWriter) clear(ctx context.Context) error {
	select {
	case <-w.done:
	case <-ctx.Done():
	}
	err := w.client.DeleteAllOf(ctx, &barelbv1beta1.ServiceBGPStatus{}, client.InNamespace(w.namespace), client.MatchingLabels{LabelNode: w.node})
	if err != nil {
		return fmt.Errorf("deleting this node's ServiceBGPStatuses: %w", err)
	}
	return nil
}
