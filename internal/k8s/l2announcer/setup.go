package l2announcer

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/k8s/servicecache"
	"github.com/barelb/barelb/internal/k8s/speakerglue"
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
	changed := builder.WithPredicates(speakerglue.ContentChanged())
	b := ctrl.NewControllerManagedBy(mgr).
		Named("layer2-announcer").
		Watches(&corev1.Node{}, toPlan, changed).
		Watches(&barelbv1beta1.IPAddressPool{}, toPlan, changed).
		Watches(&barelbv1beta1.L2Advertisement{}, toPlan, changed).
		WatchesRawSource(source.Channel(r.Services.Subscribe(), toPlan))
	if memberChanges != nil {
		b = b.WatchesRawSource(source.Channel(memberChanges, toPlan))
	}
	if r.Speakers != nil {
		if err := mgr.Add(runnableFunc(func(ctx context.Context) error {
			r.Speakers.Watch(ctx, speakersWatchInterval, r.wake)
			return nil
		})); err != nil {
			return fmt.Errorf("adding the speakers' Lease watch: %w", err)
		}
	}
	if r.Peers != nil {
		if err := mgr.Add(runnableFunc(func(ctx context.Context) error { r.planFromPeers(ctx); return nil })); err != nil {
			return fmt.Errorf("adding the plan from other speakers' tables: %w", err)
		}
	}
	r.statuses = newStatusWriter(r)
	if err := mgr.Add(runnableFunc(func(ctx context.Context) error { r.statuses.run(ctx); return nil })); err != nil {
		return fmt.Errorf("adding the ServiceL2Status writer: %w", err)
	}
	r.conflictChanges = make(chan event.GenericEvent, 1)
	b = b.WatchesRawSource(source.Channel(r.conflictChanges, toPlan))
	if err := b.Complete(r); err != nil {
		return fmt.Errorf("setting up the layer-2 announcer: %w", err)
	}
	return nil
}

// speakersWatchInterval is how often the announcer looks at the speakers'
// Leases for one that stopped being renewed.
const speakersWatchInterval = time.Second

// HostNetwork is the network namespace the speaker runs in. Responders are
// opened on first use and run until Ctx ends; Watch replaces the
// responder of an interface that is deleted and made again, or whose MAC
// changes, without a restart.
type HostNetwork struct {
	Ctx context.Context
	Log logr.Logger
	// Options are every responder's; its handlers (OnConflict, OnProbed,
	// OnPeerClaim) are those of the Reporter that Responder is given.
	Options layer2.Options
	// InNetns, when set, runs what reads interfaces or opens sockets (a
	// test's network namespace); nil runs it in the caller's.
	InNetns func(func() error) error

	mu         sync.Mutex
	responders map[string]*hostResponder
}

// hostResponder is an open responder and the interface it was opened on.
type hostResponder struct {
	resp   *layer2.Responder
	index  int
	mac    string
	cancel context.CancelFunc
	// report is who it reports to (its successor on a new interface
	// reports there too).
	report Reporter
}

func (h *HostNetwork) inNetns(f func() error) error {
	if h.InNetns == nil {
		return f()
	}
	return h.InNetns(f)
}

// Interfaces reads the host's interfaces.
func (h *HostNetwork) Interfaces() (ifaces []layer2.Interface, err error) {
	err = h.inNetns(func() error {
		ifaces, err = layer2.HostInterfaces()
		return err
	})
	return ifaces, err
}

// Responder returns the responder of interface name, opening it if needed
// (one it opens reports to report).
func (h *HostNetwork) Responder(_ context.Context, name string, report Reporter) (Responder, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r, ok := h.responders[name]; ok {
		return r.resp, nil
	}
	r, err := h.openLocked(name, report)
	if err != nil {
		return nil, err
	}
	return r.resp, nil
}

// openLocked opens and runs a responder on interface name that reports to
// report. h.mu is held.
func (h *HostNetwork) openLocked(name string, report Reporter) (*hostResponder, error) {
	var out *hostResponder
	err := h.inNetns(func() error {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return fmt.Errorf("finding interface %s: %w", name, err)
		}
		resp, err := layer2.NewResponder(ifi, h.Log, reportingTo(h.Options, report))
		if err != nil {
			return err
		}
		out = &hostResponder{resp: resp, index: ifi.Index, mac: ifi.HardwareAddr.String(), report: report}
		return nil
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(h.Ctx)
	out.cancel = cancel
	go func() { _ = out.resp.Run(ctx) }()
	if h.responders == nil {
		h.responders = map[string]*hostResponder{}
	}
	h.responders[name] = out
	return out, nil
}

// Leave starts the hand-over of every open responder (see
// layer2.Responder.Leave): the speaker stops.
func (h *HostNetwork) Leave() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.responders {
		r.resp.Leave()
	}
}

// Watch looks at the interfaces with open responders every interval
// until ctx ends (see refresh).
func (h *HostNetwork) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h.refresh()
	}
}

// refresh replaces the responder of every interface that was made again
// (another index) or got another MAC: the old one's sockets are bound to
// an interface that is gone, and its addresses go to the new one
// (layer2.Responder.HandOver), which tells the LAN. An interface that is
// gone, and not back yet, keeps its responder until it is.
func (h *HostNetwork) refresh() {
	var ifaces []net.Interface
	if err := h.inNetns(func() (err error) { ifaces, err = net.Interfaces(); return err }); err != nil {
		h.Log.V(1).Info("Listing interfaces failed", "error", err.Error())
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ifi := range ifaces {
		old, ok := h.responders[ifi.Name]
		if !ok || (old.index == ifi.Index && old.mac == ifi.HardwareAddr.String()) {
			continue
		}
		fresh, err := h.openLocked(ifi.Name, old.report)
		if err != nil {
			h.Log.Error(err, "interface made again, but no responder could be opened on it; retrying", "interface", ifi.Name)
			h.responders[ifi.Name] = old
			continue
		}
		old.resp.HandOver(fresh.resp)
		old.cancel()
		h.Log.Info("interface made again or its MAC changed; answering on the new one", "interface", ifi.Name,
			"mac", fresh.mac, "previousMAC", old.mac, "index", fresh.index, "previousIndex", old.index)
	}
}
