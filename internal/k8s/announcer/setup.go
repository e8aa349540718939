package announcer

import (
	"context"
	"fmt"
	"net"
	"sync"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/k8s/servicecache"
	"github.com/barelb/barelb/internal/layer2"
)

// Setup adds the reconciler to mgr. Every watched change, and every
// membership change sent on memberChanges, recomputes the plan. Services,
// EndpointSlices and ServiceL2Statuses are read from r.Services, which
// Setup makes and adds to mgr when it is nil; a change there that the plan
// can see (see servicecache.Cache.Subscribe: not a Service's ports, not an
// EndpointSlice's addresses, not a status written) recomputes it too.
func Setup(mgr ctrl.Manager, r *Reconciler, memberChanges <-chan event.GenericEvent) error {
	if r.Services == nil {
		services, err := servicecache.New(mgr.GetConfig(), servicecache.Options{StatusNamespace: r.Namespace, Log: r.Log})
		if err != nil {
			return err
		}
		if err := mgr.Add(services); err != nil {
			return fmt.Errorf("adding the service cache: %w", err)
		}
		r.Services = services
	}
	toPlan := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{planKey}
	})
	changed := builder.WithPredicates(ContentChanged())
	b := ctrl.NewControllerManagedBy(mgr).
		Named("layer2-announcer").
		Watches(&corev1.Node{}, toPlan, changed).
		Watches(&barelbv1beta1.IPAddressPool{}, toPlan, changed).
		Watches(&barelbv1beta1.L2Advertisement{}, toPlan, changed).
		WatchesRawSource(source.Channel(r.Services.Subscribe(), toPlan))
	if memberChanges != nil {
		b = b.WatchesRawSource(source.Channel(memberChanges, toPlan))
	}
	r.conflictChanges = make(chan event.GenericEvent, 1)
	b = b.WatchesRawSource(source.Channel(r.conflictChanges, toPlan))
	if err := b.Complete(r); err != nil {
		return fmt.Errorf("setting up the layer-2 announcer: %w", err)
	}
	return nil
}

// ContentChanged (used by the BGP advertiser too) lets through every event but an update that changes
// nothing the cache holds besides the resource version: a Node's
// heartbeat, once the cache has trimmed what the announcer does not read
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

// HostNetwork is the network namespace the speaker runs in. Responders are
// opened on first use and run until Ctx ends.
type HostNetwork struct {
	Ctx context.Context
	Log logr.Logger
	// Options are every responder's (OnConflict and OnProbed: the
	// Reconciler's HandleConflict and HandleProbed).
	Options layer2.Options

	mu         sync.Mutex
	responders map[string]*layer2.Responder
}

// Interfaces reads the host's interfaces.
func (h *HostNetwork) Interfaces() ([]layer2.Interface, error) { return layer2.HostInterfaces() }

// Responder returns the responder of interface name, opening it if needed.
func (h *HostNetwork) Responder(_ context.Context, name string) (Responder, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r, ok := h.responders[name]; ok {
		return r, nil
	}
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("finding interface %s: %w", name, err)
	}
	r, err := layer2.NewResponder(ifi, h.Log, h.Options)
	if err != nil {
		return nil, err
	}
	if h.responders == nil {
		h.responders = map[string]*layer2.Responder{}
	}
	h.responders[name] = r
	go func() { _ = r.Run(h.Ctx) }()
	return r, nil
}
