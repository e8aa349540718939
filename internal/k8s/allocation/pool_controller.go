package allocation

import (
	"context"
	"fmt"
	"math"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
)

// Pool condition types.
const (
	// ConditionValid is True when the pool is in use, False when barelb
	// ignores it (invalid, or outside barelb's namespace).
	ConditionValid = config.PoolConditionValid
	// ConditionOverlapping is True when the pool shares addresses with
	// another pool. Overlap is safe (no address is ever given twice) but
	// makes counts add up to more than there is.
	ConditionOverlapping = "Overlapping"
)

// ReasonPoolInvalid is the Warning Event on a pool whose spec is refused.
const ReasonPoolInvalid = "PoolInvalid"

// poolReconciler keeps each IPAddressPool's status current.
type poolReconciler struct {
	client   client.Client
	state    *state
	recorder record.EventRecorder
}

func poolStub(name, namespace string) *barelbv1beta1.IPAddressPool {
	return &barelbv1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
}

func (r *poolReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var pool barelbv1beta1.IPAddressPool
	if err := r.client.Get(ctx, req.NamespacedName, &pool); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.Name)
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, fmt.Errorf("reading IPAddressPool %s: %w", req, err)
	}
	status := pool.Status.DeepCopy()
	if pool.Namespace != r.state.namespace {
		setCondition(status, pool.Generation, ConditionValid, metav1.ConditionFalse, "WrongNamespace",
			fmt.Sprintf("barelb reads its configuration only in namespace %s; this pool is ignored", r.state.namespace))
		return reconcile.Result{}, r.patch(ctx, &pool, status)
	}

	report, err := r.state.report(ctx, pool.Name)
	if err != nil {
		return reconcile.Result{}, err
	}
	switch {
	case report.invalid != "":
		// Told once per new reason, not on every status write.
		if old := meta.FindStatusCondition(pool.Status.Conditions, ConditionValid); old == nil || old.Status != metav1.ConditionFalse || old.Message != report.invalid {
			r.recorder.Event(&pool, corev1.EventTypeWarning, ReasonPoolInvalid, report.invalid)
		}
		setCondition(status, pool.Generation, ConditionValid, metav1.ConditionFalse, "Invalid", report.invalid)
	default:
		setCondition(status, pool.Generation, ConditionValid, metav1.ConditionTrue, "Valid", "the pool is in use")
	}
	// The addresses in force let a restarted controller keep refusing an
	// edit, and the speakers announce what the controller handed out.
	status.AddressesInForce = report.inForce
	if len(report.overlaps) > 0 {
		setCondition(status, pool.Generation, ConditionOverlapping, metav1.ConditionTrue, "Overlapping",
			"shares addresses with "+strings.Join(report.overlaps, ", ")+"; no address is given twice, but usage counts overlap")
	} else {
		setCondition(status, pool.Generation, ConditionOverlapping, metav1.ConditionFalse, "Disjoint", "shares no address with another pool")
	}
	s := report.stats
	status.AssignedIPv4, status.AvailableIPv4 = s.AssignedIPv4, s.AvailableIPv4
	status.AssignedIPv6, status.AvailableIPv6 = s.AssignedIPv6, s.AvailableIPv6
	r.export(pool.Name, report)
	return reconcile.Result{}, r.patch(ctx, &pool, status)
}

func (r *poolReconciler) export(name string, report poolReport) {
	m := r.state.metrics
	s := report.stats
	m.AddressesInUse.WithLabelValues(name, "ipv4").Set(float64(s.AssignedIPv4))
	m.AddressesInUse.WithLabelValues(name, "ipv6").Set(float64(s.AssignedIPv6))
	m.AddressesTotal.WithLabelValues(name, "ipv4").Set(total(s.AssignedIPv4, s.AvailableIPv4))
	m.AddressesTotal.WithLabelValues(name, "ipv6").Set(total(s.AssignedIPv6, s.AvailableIPv6))
}

// total adds without the int64 overflow a /64 would cause.
func total(assigned, available int64) float64 {
	if available == math.MaxInt64 {
		return math.Pow(2, 64)
	}
	return float64(assigned) + float64(available)
}

func (r *poolReconciler) forget(name string) {
	m := r.state.metrics
	for _, family := range []string{"ipv4", "ipv6"} {
		m.AddressesInUse.DeleteLabelValues(name, family)
		m.AddressesTotal.DeleteLabelValues(name, family)
	}
}

func (r *poolReconciler) patch(ctx context.Context, pool *barelbv1beta1.IPAddressPool, status *barelbv1beta1.IPAddressPoolStatus) error {
	if equality.Semantic.DeepEqual(&pool.Status, status) {
		return nil
	}
	before := pool.DeepCopy()
	pool.Status = *status
	if err := r.client.Status().Patch(ctx, pool, client.MergeFrom(before)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("writing status of IPAddressPool %s: %w", pool.Name, err)
	}
	return nil
}

func setCondition(status *barelbv1beta1.IPAddressPoolStatus, generation int64, kind string, value metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&status.Conditions, metav1.Condition{
		Type: kind, Status: value, Reason: reason, Message: message, ObservedGeneration: generation,
	})
}
