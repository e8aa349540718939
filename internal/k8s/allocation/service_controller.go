package allocation

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
	"github.com/barelb/barelb/internal/k8s/servicecondition"
)

// serviceReconciler gives LoadBalancer Services their addresses.
type serviceReconciler struct {
	client   ctrl.Client
	state    *state
	recorder record.EventRecorder
	// poolChanged tells the pool reconciler which pools' counts moved.
	poolChanged chan<- event.GenericEvent
	// retry wakes Services left without an address when one is freed.
	retry chan<- event.GenericEvent
}

func (r *serviceReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	key := req.String()
	var svc corev1.Service
	if err := r.client.Get(ctx, req.NamespacedName, &svc); err != nil {
		if !apierrors.IsNotFound(err) {
			return reconcile.Result{}, fmt.Errorf("reading Service %s: %w", key, err)
		}
		pools, err := r.state.release(ctx, key)
		r.notifyPools(ctx, pools)
		r.retryFailing(ctx, key, len(pools) > 0)
		return reconcile.Result{}, err
	}

	if !config.ServesService(&svc, r.state.lbClass) {
		return reconcile.Result{}, r.stopServing(ctx, key, &svc)
	}

	request, err := config.ParseServiceRequest(&svc)
	if err != nil {
		// Bad input never costs an address: the Service keeps what it has
		// and its owner is told what to fix.
		f := fail(ReasonInvalidRequest, "%v", err)
		if r.state.noteFailure(key, f) {
			r.recorder.Event(&svc, corev1.EventTypeWarning, f.Reason, f.Message)
			r.state.metrics.AllocationFailures.WithLabelValues(f.Reason).Inc()
		}
		// What it has is what the allocator holds for it, not what a
		// second writer put in its status or pool annotation: the
		// speakers announce the addresses of the pool named there.
		addrs, pool, err := r.state.held(ctx, key, request.Families)
		if err != nil {
			return reconcile.Result{}, err
		}
		cond := addressCondition(addrs, pool, f)
		return reconcile.Result{}, r.writeStatus(ctx, &svc, addrs, pool, &cond)
	}

	nsLabels, err := r.namespaceLabels(ctx, svc.Namespace)
	if err != nil {
		return reconcile.Result{}, err
	}
	d, pools, freed, err := r.state.decideFor(ctx, key, svc.Namespace, nsLabels, labels.Set(svc.Labels), request, svc.Annotations[config.AnnotationAllocatedFromPool])
	if err != nil {
		return reconcile.Result{}, err
	}
	r.notifyPools(ctx, pools)
	r.retryFailing(ctx, key, freed)

	old := ingressAddresses(&svc)
	cond := addressCondition(d.Addresses, d.Pool, d.Failure)
	if err := r.writeStatus(ctx, &svc, d.Addresses, d.Pool, &cond); err != nil {
		return reconcile.Result{}, err
	}
	r.tell(&svc, old, d)
	return reconcile.Result{}, nil
}

// tell records the Events and metrics a change calls for. An unchanged
// Service gets none, so resyncs stay quiet.
func (r *serviceReconciler) tell(svc *corev1.Service, old []netip.Addr, d decision) {
	if d.Failure != nil && d.FailureIsNew {
		r.recorder.Event(svc, corev1.EventTypeWarning, d.Failure.Reason, d.Failure.Message)
		r.state.metrics.AllocationFailures.WithLabelValues(d.Failure.Reason).Inc()
	}
	if slices.Equal(old, d.Addresses) {
		return
	}
	switch {
	case len(d.Addresses) == 0:
		r.recorder.Eventf(svc, corev1.EventTypeNormal, ReasonReleased, "released %s", addressList(old))
	case len(old) > 0 && !overlap(old, d.Addresses):
		r.state.metrics.AddressesMoved.Inc()
		r.state.log.Info("Service moved to a new address", "service", ctrl.ObjectKeyFromObject(svc).String(), "from", addressList(old), "to", addressList(d.Addresses))
		r.recorder.Eventf(svc, corev1.EventTypeWarning, ReasonMoved, "moved from %s to %s (pool %s): the old address is no longer one this Service may use (its pool changed, or it can no longer share it)", addressList(old), addressList(d.Addresses), d.Pool)
	default:
		r.recorder.Eventf(svc, corev1.EventTypeNormal, ReasonAllocated, "assigned %s from pool %s", addressList(d.Addresses), d.Pool)
	}
}

func overlap(a, b []netip.Addr) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

// stopServing lets go of a Service barelb no longer serves (its type or
// class changed) and clears the status barelb wrote. A status written by
// another implementation is left alone.
func (r *serviceReconciler) stopServing(ctx context.Context, key string, svc *corev1.Service) error {
	pools, err := r.state.release(ctx, key)
	if err != nil {
		return err
	}
	r.notifyPools(ctx, pools)
	r.retryFailing(ctx, key, len(pools) > 0)
	if _, ours := svc.Annotations[config.AnnotationAllocatedFromPool]; !ours {
		// Only the condition barelb set goes.
		_, err := servicecondition.Write(ctx, r.client, svc, barelbv1beta1.ConditionAddressAssigned, nil, time.Now())
		return err
	}
	old := ingressAddresses(svc)
	if err := r.writeStatus(ctx, svc, nil, "", nil); err != nil {
		return err
	}
	if len(old) > 0 {
		r.recorder.Eventf(svc, corev1.EventTypeNormal, ReasonReleased, "released %s: barelb no longer serves this Service", addressList(old))
	}
	return nil
}

func (r *serviceReconciler) namespaceLabels(ctx context.Context, name string) (labels.Set, error) {
	var ns corev1.Namespace
	if err := r.client.Get(ctx, types.NamespacedName{Name: name}, &ns); err != nil {
		if apierrors.IsNotFound(err) {
			return labels.Set{}, nil
		}
		return nil, fmt.Errorf("reading namespace %s: %w", name, err)
	}
	return labels.Set(ns.Labels), nil
}

// writeStatus sets the Service's addresses, the pool annotation and its
// barelb.io/AddressAssigned condition (removed when cond is nil) in one
// write: the status subresource of a Service also takes metadata, so a
// Service costs one request, not three. It is a strategic merge patch:
// status.conditions merges by type, so the barelb.io/Announced condition
// (the announcement reconciler's) and anyone else's stay as they are.
func (r *serviceReconciler) writeStatus(ctx context.Context, svc *corev1.Service, ips []netip.Addr, pool string, cond *servicecondition.Want) error {
	existing := servicecondition.Find(svc, barelbv1beta1.ConditionAddressAssigned)
	condSays := existing == nil && cond == nil || cond != nil && servicecondition.Says(existing, *cond, svc.Generation)
	if statusMatches(svc, ips, pool) && condSays {
		return nil
	}
	ingress := make([]corev1.LoadBalancerIngress, len(ips))
	vip := corev1.LoadBalancerIPModeVIP
	for i, ip := range ips {
		ingress[i] = corev1.LoadBalancerIngress{IP: ip.String(), IPMode: &vip}
	}
	var poolValue any
	if pool != "" {
		poolValue = pool
	}
	status := map[string]any{"loadBalancer": map[string]any{"ingress": ingress}}
	if !condSays {
		var next *metav1.Condition
		if cond != nil {
			c := servicecondition.Next(existing, barelbv1beta1.ConditionAddressAssigned, *cond, svc.Generation, time.Now())
			next = &c
		}
		status["conditions"] = []any{servicecondition.Entry(barelbv1beta1.ConditionAddressAssigned, next)}
	}
	patch := map[string]any{
		"metadata": map[string]any{"annotations": map[string]any{config.AnnotationAllocatedFromPool: poolValue}},
		"status":   status,
	}
	data, err := json.Marshal(patch)
	if err != nil {
		return fmt.Errorf("encoding status of %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	// A strategic merge patch replaces status.loadBalancer.ingress whole
	// (an atomic list) as a JSON merge patch would, and merges
	// status.conditions by type, which a JSON merge patch cannot.
	if err := r.client.Status().Patch(ctx, svc, ctrl.RawPatch(types.StrategicMergePatchType, data)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("writing status of %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	return nil
}

func statusMatches(svc *corev1.Service, ips []netip.Addr, pool string) bool {
	if svc.Annotations[config.AnnotationAllocatedFromPool] != pool {
		return false
	}
	ingress := svc.Status.LoadBalancer.Ingress
	if len(ingress) != len(ips) {
		return false
	}
	for i, in := range ingress {
		if in.IP != ips[i].String() || in.Hostname != "" || in.IPMode == nil || *in.IPMode != corev1.LoadBalancerIPModeVIP {
			return false
		}
	}
	return true
}

func (r *serviceReconciler) notifyPools(ctx context.Context, pools []string) {
	for _, name := range pools {
		send(ctx, r.poolChanged, poolStub(name, r.state.namespace))
	}
}

// send hands an object to a channel source, unless the manager is
// stopping: then nobody reads the channel any more.
func send(ctx context.Context, ch chan<- event.GenericEvent, obj ctrl.Object) {
	select {
	case ch <- event.GenericEvent{Object: obj}:
	case <-ctx.Done():
	}
}

// retryFailing reconciles again the Services still waiting for an address
// once key freed one, since nothing else about them changed.
func (r *serviceReconciler) retryFailing(ctx context.Context, key string, freed bool) {
	if !freed {
		return
	}
	for _, other := range r.state.failing() {
		if other == key {
			continue
		}
		ns, name, _ := strings.Cut(other, "/")
		send(ctx, r.retry, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})
	}
}
