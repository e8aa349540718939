package bgpadvertiser

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/bgp"
	"github.com/barelb/barelb/internal/k8s/servicecache"
	"github.com/barelb/barelb/internal/k8s/speakerglue"
	"github.com/barelb/barelb/internal/metrics"
)

// Options configure the advertiser.
type Options struct {
	// Node is the node the speaker runs on; Namespace is barelb's;
	// LBClass is the controller's --lb-class.
	Node, Namespace, LBClass string
	// RouterID is the default BGP router ID (a BGPPeer's routerID wins);
	// when invalid, the node's InternalIP. An IPv6 address stands for its
	// last four bytes (a router ID is 32 bits).
	RouterID netip.Addr
	// Registerer takes the BGP metrics.
	Registerer prometheus.Registerer
	// NotEstablishedAfter is how long a session may stay down before a
	// BGPSessionNotEstablished Event; DefaultNotEstablishedAfter when 0.
	NotEstablishedAfter time.Duration
	// StopTimeout bounds closing the sessions when the speaker stops.
	StopTimeout time.Duration
	// StopAfter, when set, is closed when the sessions may close on
	// stopping: the speaker closes it once layer 2 has handed its
	// addresses over. It is waited for at most StopTimeout.
	StopAfter <-chan struct{}
	// GracefulShutdown is how long a stopping speaker advertises its
	// routes with the GRACEFUL_SHUTDOWN community (RFC 8326) before it
	// closes its sessions; 0 closes them without.
	GracefulShutdown time.Duration
	// RestartInPlace tells that a stopping speaker expects to be started
	// again on this node (the speaker's --restart-hold): when every
	// session sent routes has graceful restart and the node is Ready and
	// not cordoned (decision.HoldOverRestart), it leaves its routes as
	// they are, with no graceful shutdown, and the routers keep them over
	// the restart.
	RestartInPlace bool
	// Services is the speaker's cache of Services and their endpoints'
	// nodes, shared with layer 2; Setup makes one when nil.
	Services *servicecache.Cache
	// Sessions, when set, is connected to the node's BGP speaker.
	Sessions *Sessions
}

// Setup adds the BGP advertiser to mgr: the reconciler, its own small
// cache (the Secrets of barelb's namespace, for passwordSecret, and this
// node's ServiceBGPStatus objects: no cluster-wide Secret watch, and no
// other node's statuses in memory), the session and BFD watchers, and a
// runnable that closes every session, withdrawing the routes, when the
// manager stops (after o.GracefulShutdown of RFC 8326's graceful
// shutdown). No session opens until a BGPPeer selects the node.
func Setup(ctx context.Context, mgr ctrl.Manager, o Options) error {
	log := mgr.GetLogger().WithName("bgp")
	routerID := routerIDFrom(o.RouterID)
	if !routerID.IsValid() {
		ip, err := speakerglue.NodeAddress(ctx, mgr.GetAPIReader(), o.Node)
		if err != nil {
			return fmt.Errorf("finding this node's address for the BGP router ID: %w", err)
		}
		routerID = routerIDFrom(ip)
	}
	m, err := metrics.NewSpeakerBGP(o.Registerer)
	if err != nil {
		return err
	}
	own, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(),
		DefaultNamespaces: map[string]cache.Config{o.Namespace: {}},
		DefaultTransform:  cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}:                  {Transform: slimSecret},
			&barelbv1beta1.ServiceBGPStatus{}: {Label: labels.SelectorFromSet(labels.Set{LabelNode: o.Node}), Transform: slimBGPStatus},
		},
	})
	if err != nil {
		return fmt.Errorf("making the BGP advertiser's cache: %w", err)
	}
	if err := mgr.Add(own); err != nil {
		return fmt.Errorf("adding the BGP advertiser's cache: %w", err)
	}

	services := o.Services
	if services == nil {
		if services, err = servicecache.New(mgr.GetConfig(), servicecache.Options{Log: log.WithName("servicecache")}); err != nil {
			return err
		}
		if err := mgr.Add(services); err != nil {
			return fmt.Errorf("adding the service cache: %w", err)
		}
	}

	sessions := newSessionWatch(o.Node, o.NotEstablishedAfter, m)
	speaker := bgp.New(bgp.Options{RouterID: routerID, ASN: placeholderASN, Logger: log.WithName("gobgp"), OnEvent: sessions.onEvent})
	if err := speaker.Start(ctx); err != nil {
		return fmt.Errorf("starting BGP: %w", err)
	}
	if o.Sessions != nil {
		o.Sessions.speaker.Store(speaker)
	}
	r := &Reconciler{
		Client: mgr.GetClient(), Own: own, Services: services, Recorder: mgr.GetEventRecorderFor("barelb-speaker"), Log: log,
		Node: o.Node, Namespace: o.Namespace, LBClass: o.LBClass, Speaker: speaker, Metrics: m,
		sessions: sessions,
		bfd:      newBFDControl(log.WithName("bfd"), speaker, m),
		ra:       newRAControl(log.WithName("ra")),
		statuses: newStatusWriter(mgr.GetClient(), own, log.WithName("status"), o.Node, o.Namespace),
	}
	r.bfd.verdict = sessions.bfdVerdict
	sessions.speaker = speaker
	sessions.record = func(ctx context.Context, n news) { r.record(ctx, &barelbv1beta1.BGPPeer{}, n) }

	toPlan := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{planKey}
	})
	changed := builder.WithPredicates(speakerglue.ContentChanged())
	thisNode := builder.WithPredicates(speakerglue.ContentChanged(), predicate.NewPredicateFuncs(func(obj client.Object) bool { return obj.GetName() == o.Node }))
	err = ctrl.NewControllerManagedBy(mgr).
		Named("bgp-advertiser").
		// Services and EndpointSlices only through the record cache:
		// watching them here would start the manager's typed caches.
		WatchesRawSource(source.Channel(services.Subscribe(), toPlan)).
		WatchesRawSource(source.Channel(r.ra.changed, toPlan)).
		Watches(&corev1.Node{}, toPlan, thisNode).
		Watches(&barelbv1beta1.IPAddressPool{}, toPlan, changed).
		Watches(&barelbv1beta1.BGPPeer{}, toPlan, changed).
		Watches(&barelbv1beta1.BGPAdvertisement{}, toPlan, changed).
		Watches(&barelbv1beta1.Community{}, toPlan, changed).
		Watches(&barelbv1beta1.BFDProfile{}, toPlan, changed).
		WatchesRawSource(source.Kind(own, &corev1.Secret{},
			handler.TypedEnqueueRequestsFromMapFunc(func(context.Context, *corev1.Secret) []reconcile.Request { return []reconcile.Request{planKey} }))).
		// Only deletions of statuses: a status this node wrote and
		// someone removed is written again; the node's own writes need no
		// new plan.
		WatchesRawSource(source.Kind(own, &barelbv1beta1.ServiceBGPStatus{},
			handler.TypedEnqueueRequestsFromMapFunc(func(context.Context, *barelbv1beta1.ServiceBGPStatus) []reconcile.Request {
				return []reconcile.Request{planKey}
			}),
			predicate.TypedFuncs[*barelbv1beta1.ServiceBGPStatus]{
				CreateFunc:  func(event.TypedCreateEvent[*barelbv1beta1.ServiceBGPStatus]) bool { return false },
				UpdateFunc:  func(event.TypedUpdateEvent[*barelbv1beta1.ServiceBGPStatus]) bool { return false },
				GenericFunc: func(event.TypedGenericEvent[*barelbv1beta1.ServiceBGPStatus]) bool { return false },
			})).
		Complete(r)
	if err != nil {
		return fmt.Errorf("setting up the BGP advertiser: %w", err)
	}

	stopTimeout := o.StopTimeout
	if stopTimeout <= 0 {
		stopTimeout = 5 * time.Second
	}
	return mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		go sessions.run(ctx)
		go r.bfd.run(ctx)
		go r.ra.run(ctx)
		go r.statuses.run(ctx)
		<-ctx.Done()
		// Graceful shutdown first, while layer 2 hands its addresses
		// over: the routers move their traffic before the routes go;
		// unless the speaker restarts in place and the routers keep the
		// routes over the restart (decision.HoldOverRestart): then
		// nothing moves.
		// Under the reconciler's lock, so that a plan being applied
		// cannot turn it off again.
		r.mu.Lock()
		hold := o.RestartInPlace && r.holdOverRestart
		var gshut <-chan struct{} // nil: no graceful shutdown to wait for
		if hold {
			log.Info("restarting in place: routes left as they are, no graceful shutdown; the sessions with graceful restart stay open until the process exits, and the routers keep the routes, stale, until it is back")
		} else {
			r.shuttingDown.Store(true)
			gshut = startGracefulShutdown(log, speaker, o.GracefulShutdown, stopTimeout)
		}
		r.mu.Unlock()
		if o.StopAfter != nil {
			select {
			case <-o.StopAfter:
			case <-time.After(stopTimeout):
			}
		}
		if gshut != nil {
			<-gshut
		}
		// Close every session (a Cease notification each: the routers
		// withdraw this node's routes at once, not at hold time), then
		// BFD; then delete this node's ServiceBGPStatuses. Sessions with
		// graceful restart are the exception (see restarting).
		r.stopping.Store(true)
		r.mu.Lock()
		defer r.mu.Unlock()
		stopCtx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		var err error
		if keep := restarting(r.peers); len(keep) > 0 {
			log.Info("leaving the sessions with graceful restart to the process's exit, so that the routers keep this node's routes", "peers", len(keep))
			err = speaker.SetPeers(stopCtx, keep)
		} else {
			err = speaker.Stop(stopCtx)
		}
		r.bfd.close()
		if err != nil {
			err = fmt.Errorf("closing the BGP sessions: %w", err)
		} else {
			log.Info("BGP sessions closed")
		}
		if hold {
			// The routers keep the routes the statuses name; the
			// restarted speaker finds them right and writes nothing.
			return err
		}
		return errors.Join(err, r.statuses.clear(stopCtx))
	}))
}

// restarting are the peers whose sessions stay open when the advertiser
// stops: those with graceful restart. The process's exit then closes
// their TCP connections without a NOTIFICATION, which a router takes for
// a restart (RFC 4724 §4.2): it keeps this node's routes, stale, until
// the restarted speaker sends them again (or the restart time, 120 s,
// passes). Closing them would send a Cease, which GoBGP turns into a Hard
// Reset for a peer with RFC 8538's N bit: the router would drop the
// routes at once.
func restarting(peers []bgp.Peer) []bgp.Peer {
	var keep []bgp.Peer
	for _, p := range peers {
		if p.GracefulRestart {
			keep = append(keep, p)
		}
	}
	return keep
}

// placeholderASN is the speaker's default local ASN, never used: every
// session takes its BGPPeer's myASN.
const placeholderASN = 64512

// routerIDFrom is a BGP router ID (an IPv4 address) from a node address.
func routerIDFrom(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.Is4() {
		return ip
	}
	b := ip.As16()
	return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
}

// slimSecret keeps of a Secret what passwordSecret reads: the password
// key (the other keys of Secrets in barelb's namespace, such as the
// memberlist key, are not the advertiser's business).
func slimSecret(in any) (any, error) {
	s, ok := in.(*corev1.Secret)
	if !ok {
		return in, nil
	}
	out := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, UID: s.UID, ResourceVersion: s.ResourceVersion},
		Type:       s.Type,
	}
	if pw, ok := s.Data[SecretPasswordKey]; ok {
		out.Data = map[string][]byte{SecretPasswordKey: pw}
	}
	return out, nil
}

// slimBGPStatus keeps of a ServiceBGPStatus what the status writer
// compares and writes with: name, resource version and status. A node
// has one per Service it advertises (10,000 objects at 10,000 Services),
// and its labels and metadata doubled what each one costs. The labels go
// too: the cache is restricted to this node's statuses by its label
// selector, applied by the API server, so nothing filters on them here.
func slimBGPStatus(in any) (any, error) {
	s, ok := in.(*barelbv1beta1.ServiceBGPStatus)
	if !ok {
		return in, nil
	}
	return &barelbv1beta1.ServiceBGPStatus{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, UID: s.UID, ResourceVersion: s.ResourceVersion},
		Status:     s.Status,
	}, nil
}
