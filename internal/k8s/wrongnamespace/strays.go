package wrongnamespace

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
)

// ReasonWrongNamespace is the reason of the Warning Event.
const ReasonWrongNamespace = "WrongNamespace"

// Kinds are the configuration kinds told here, by name.
func Kinds() map[string]func() client.Object {
	return map[string]func() client.Object{
		"L2Advertisement":  func() client.Object { return &barelbv1beta1.L2Advertisement{} },
		"BGPAdvertisement": func() client.Object { return &barelbv1beta1.BGPAdvertisement{} },
		"BGPPeer":          func() client.Object { return &barelbv1beta1.BGPPeer{} },
		"BFDProfile":       func() client.Object { return &barelbv1beta1.BFDProfile{} },
		"Community":        func() client.Object { return &barelbv1beta1.Community{} },
	}
}

type reconciler struct {
	client    client.Client
	recorder  record.EventRecorder
	namespace string
	kind      string
	newObject func() client.Object
	// told holds the UIDs already warned, so that resyncs stay quiet.
	told sync.Map
}

func (r *reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	obj := r.newObject()
	if err := r.client.Get(ctx, req.NamespacedName, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, fmt.Errorf("reading %s %s: %w", r.kind, req, err)
	}
	if _, done := r.told.LoadOrStore(types.UID(obj.GetUID()), true); done {
		return reconcile.Result{}, nil
	}
	r.recorder.Eventf(obj, corev1.EventTypeWarning, ReasonWrongNamespace,
		"barelb reads its configuration only in namespace %s; this %s is ignored", r.namespace, r.kind)
	return reconcile.Result{}, nil
}

// Setup adds one reconciler per kind, watching objects outside namespace.
func Setup(mgr ctrl.Manager, namespace string) error {
	outside := predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetNamespace() != namespace })
	for kind, newObject := range Kinds() {
		r := &reconciler{
			client: mgr.GetClient(), recorder: mgr.GetEventRecorderFor("barelb-controller"),
			namespace: namespace, kind: kind, newObject: newObject,
		}
		err := ctrl.NewControllerManagedBy(mgr).
			Named("stray-"+kind).
			For(newObject(), builder.WithPredicates(outside)).
			Complete(r)
		if err != nil {
			return fmt.Errorf("setting up the %s namespace check: %w", kind, err)
		}
	}
	return nil
}
