package servicecondition

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// MaxMessage bounds a condition's message: the API server refuses more
// than 32768 bytes, and a list of a thousand peers says no more than its
// first few.
const MaxMessage = 1024

// Want is what a condition must say; the writer fills in the type's
// lastTransitionTime and the Service's generation.
type Want struct {
	Status  metav1.ConditionStatus
	Reason  string
	Message string
}

// Says tells whether cond already says what want does for a Service of
// generation gen, in which case nothing is written.
func Says(cond *metav1.Condition, want Want, gen int64) bool {
	return cond != nil && cond.Status == want.Status && cond.Reason == want.Reason &&
		cond.Message == clip(want.Message) && cond.ObservedGeneration == gen
}

// Next is the condition of type typ to write in place of existing (nil
// when there is none): lastTransitionTime moves only when the status
// does.
func Next(existing *metav1.Condition, typ string, want Want, gen int64, now time.Time) metav1.Condition {
	c := metav1.Condition{
		Type: typ, Status: want.Status, Reason: want.Reason, Message: clip(want.Message),
		ObservedGeneration: gen, LastTransitionTime: metav1.NewTime(now.UTC().Truncate(time.Second)),
	}
	if existing != nil && existing.Status == want.Status && !existing.LastTransitionTime.IsZero() {
		c.LastTransitionTime = existing.LastTransitionTime
	}
	return c
}

// Entry is the strategic-merge-patch list entry that sets cond, or,
// when cond is nil, removes the entry of type typ. Put it in a patch's
// status.conditions: the API server merges the list by type (core/v1
// ServiceStatus.Conditions has patchMergeKey type), so entries of other
// types, other writers', are left as they are.
func Entry(typ string, cond *metav1.Condition) any {
	if cond == nil {
		return map[string]any{"$patch": "delete", "type": typ}
	}
	return cond
}

// Find returns the Service's condition of type typ, or nil.
func Find(svc *corev1.Service, typ string) *metav1.Condition {
	return meta.FindStatusCondition(svc.Status.Conditions, typ)
}

// Write sets the Service's condition of type typ to want (a nil want
// removes it), unless it already says that. A Service gone meanwhile is
// no error.
func Write(ctx context.Context, c client.Client, svc *corev1.Service, typ string, want *Want, now time.Time) (wrote bool, err error) {
	existing := Find(svc, typ)
	var cond *metav1.Condition
	if want != nil {
		if Says(existing, *want, svc.Generation) {
			return false, nil
		}
		next := Next(existing, typ, *want, svc.Generation, now)
		cond = &next
	} else if existing == nil {
		return false, nil
	}
	patch := map[string]any{"status": map[string]any{"conditions": []any{Entry(typ, cond)}}}
	data, err := json.Marshal(patch)
	if err != nil {
		return false, fmt.Errorf("encoding condition %s of %s/%s: %w", typ, svc.Namespace, svc.Name, err)
	}
	if err := c.Status().Patch(ctx, svc, client.RawPatch(types.StrategicMergePatchType, data)); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("writing condition %s of %s/%s: %w", typ, svc.Namespace, svc.Name, err)
	}
	return true, nil
}

// clip shortens a message to MaxMessage bytes, on a rune boundary.
func clip(s string) string {
	if len(s) <= MaxMessage {
		return s
	}
	cut := MaxMessage - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
