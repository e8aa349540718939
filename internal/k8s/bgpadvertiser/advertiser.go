package bgpadvertiser

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/bgp"
	"github.com/barelb/barelb/internal/bgpplan"
	"github.com/barelb/barelb/internal/config"
	"github.com/barelb/barelb/internal/k8s/servicecache"
	"github.com/barelb/barelb/internal/k8s/speakerglue"
	"github.com/barelb/barelb/internal/metrics"
)

// planKey is the one request every change maps to: the plan is made for
// every peer and Service at once, so a burst of changes costs one plan.
var planKey = reconcile.Request{NamespacedName: types.NamespacedName{Name: "bgp-plan"}}

// Reconciler keeps the node's BGP sessions and routes in step with the
// plan.
type Reconciler struct {
	// Client reads the watched kinds from the manager's cache and writes.
	Client client.Client
	// Own reads the advertiser's own cache: the Secrets of Namespace and
	// this node's ServiceBGPStatus objects.
	Own client.Reader
	// Services holds the Services and their endpoints' nodes.
	Services  *servicecache.Cache
	Recorder  record.EventRecorder
	Log       logr.Logger
	Node      string
	Namespace string
	LBClass   string
	Speaker   *bgp.Speaker
	Metrics   *metrics.SpeakerBGP

	bfd      *bfdControl
	ra       *raControl
	sessions *sessionWatch
	statuses *statusWriter
	stopping atomic.Bool
	// shuttingDown is set when the speaker begins to stop: graceful
	// shutdown stays on whatever the plan says.
	shuttingDown atomic.Bool

	mu           sync.Mutex
	peerProblems problemTracker
	advProblems  problemTracker
	// sent are the routes last handed to each peer's session (the same
	// slices the speaker keeps: read-only).
	sent map[string][]bgp.Route
	// peers are the sessions last handed to the speaker.
	peers []bgp.Peer
	// holdOverRestart is the last decision's HoldOverRestart.
	holdOverRestart bool
}

// Reconcile makes the plan and applies it.
func (r *Reconciler) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopping.Load() {
		return reconcile.Result{}, nil
	}
	// An unsynced cache would withdraw the routes of Services not listed
	// yet.
	if !r.Services.WaitForSync(ctx) {
		return reconcile.Result{}, ctx.Err()
	}
	w, err := r.read(ctx)
	if err != nil {
		return reconcile.Result{}, err
	}
	d := decide(w)
	linkNextHops(d.Peers)
	r.ra.peerRouters(d.Peers)
	r.tell(ctx, d)

	var errs []error
	if err := r.Speaker.SetPeers(ctx, d.Peers); err != nil {
		errs = append(errs, err)
	}
	r.peers, r.holdOverRestart = d.Peers, d.HoldOverRestart
	if _, err := r.Speaker.SetGracefulShutdown(ctx, d.GracefulShutdown || r.shuttingDown.Load()); err != nil {
		errs = append(errs, err)
	}
	if err := r.Speaker.SetRoutes(ctx, d.Routes); err != nil {
		errs = append(errs, err)
	}
	r.countUpdates(d)
	infos := make(map[string]sessionInfo, len(d.Peers))
	for _, p := range d.Peers {
		source, hasPassword := d.Passwords[p.Name]
		infos[p.Name] = sessionInfo{Address: p.Address, Interface: p.Interface, Password: hasPassword, PasswordSecret: source, Namespace: r.Namespace}
	}
	r.sessions.configure(infos)
	if err := r.bfd.set(ctx, d.BFD); err != nil {
		errs = append(errs, err)
	}
	r.ra.set(unnumberedInterfaces(d.Peers))
	// The statuses are written apart, so that routes never wait for
	// thousands of status writes.
	r.statuses.set(d.Statuses)
	if len(errs) > 0 {
		// Per-peer errors of the speaker leave the other peers set; log
		// them and look again later rather than spin.
		r.Log.Error(errors.Join(errs...), "applying the BGP plan; retrying")
		return reconcile.Result{RequeueAfter: 10 * time.Second}, nil
	}
	return reconcile.Result{}, nil
}

// read gathers the world from the caches.
func (r *Reconciler) read(ctx context.Context) (world, error) {
	var w world
	var node corev1.Node
	if err := r.Client.Get(ctx, client.ObjectKey{Name: r.Node}, &node); apierrors.IsNotFound(err) {
		// No Node object (deleted, or not registered yet): nothing to
		// advertise from it, and no session to open until it exists.
		r.Log.Info("this node's Node object does not exist; no BGP sessions", "node", r.Node)
		w.Node.Name = r.Node
		return w, nil
	} else if err != nil {
		return w, fmt.Errorf("reading node %s: %w", r.Node, err)
	}
	w.Node, w.NodeIPs = nodeOf(&node)
	w.Cordoned = node.Spec.Unschedulable
	w.NodeReady = speakerglue.NodeCondition(&node, corev1.NodeReady) == corev1.ConditionTrue

	ns := client.InNamespace(r.Namespace)
	var pools barelbv1beta1.IPAddressPoolList
	if err := r.Client.List(ctx, &pools, ns); err != nil {
		return w, fmt.Errorf("listing IPAddressPools: %w", err)
	}
	w.Pools = map[string]*config.Pool{}
	for i := range pools.Items {
		// The definition the controller uses: the last valid one while
		// it refuses an edit.
		if p, err := config.PoolInForce(&pools.Items[i]); err == nil {
			w.Pools[p.Name] = p
		}
	}
	var peers barelbv1beta1.BGPPeerList
	if err := r.Client.List(ctx, &peers, ns); err != nil {
		return w, fmt.Errorf("listing BGPPeers: %w", err)
	}
	for i := range peers.Items {
		w.Peers = append(w.Peers, &peers.Items[i])
	}
	var advs barelbv1beta1.BGPAdvertisementList
	if err := r.Client.List(ctx, &advs, ns); err != nil {
		return w, fmt.Errorf("listing BGPAdvertisements: %w", err)
	}
	for i := range advs.Items {
		w.Advs = append(w.Advs, &advs.Items[i])
	}
	var communities barelbv1beta1.CommunityList
	if err := r.Client.List(ctx, &communities, ns); err != nil {
		return w, fmt.Errorf("listing Communities: %w", err)
	}
	w.Communities = communities.Items
	var profiles barelbv1beta1.BFDProfileList
	if err := r.Client.List(ctx, &profiles, ns); err != nil {
		return w, fmt.Errorf("listing BFDProfiles: %w", err)
	}
	for i := range profiles.Items {
		w.Profiles = append(w.Profiles, &profiles.Items[i])
	}
	var secrets corev1.SecretList
	if err := r.Own.List(ctx, &secrets, ns); err != nil {
		return w, fmt.Errorf("listing Secrets of %s: %w", r.Namespace, err)
	}
	w.Secrets = make(map[string]*corev1.Secret, len(secrets.Items))
	for i := range secrets.Items {
		w.Secrets[secrets.Items[i].Name] = &secrets.Items[i]
	}

	// Services and their endpoints' nodes come from the speaker's compact
	// record cache (servicecache), shared with the layer-2 announcer; the
	// records are read-only here.
	for _, svc := range r.Services.Services() {
		if !svc.ServedBy(r.LBClass) || svc.Pool == "" || len(svc.Addresses) == 0 {
			continue
		}
		s := bgpplan.Service{
			Key: svc.Key(), Labels: labels.Set(svc.Labels), Pool: svc.Pool,
			LocalTraffic: svc.LocalTraffic,
			Addresses:    unmapped(svc.Addresses),
		}
		if s.LocalTraffic {
			s.EndpointNodes = r.Services.EndpointNodes(s.Key)
		}
		w.Services = append(w.Services, s)
	}
	return w, nil
}

// unmapped is addrs without IPv4-mapped IPv6 forms: addrs itself (shared,
// read-only, as the record's) when it has none, which is the rule.
func unmapped(addrs []netip.Addr) []netip.Addr {
	if !slices.ContainsFunc(addrs, netip.Addr.Is4In6) {
		return addrs
	}
	out := make([]netip.Addr, len(addrs))
	for i, ip := range addrs {
		out[i] = ip.Unmap()
	}
	return out
}

// tell sends the Events of new or changed problems.
func (r *Reconciler) tell(ctx context.Context, d decision) {
	if r.peerProblems.reason == "" {
		r.peerProblems.reason, r.advProblems.reason = ReasonPeerInvalid, ReasonAdvertisementInvalid
	}
	for _, n := range r.peerProblems.update(d.PeerProblems) {
		r.Log.Info("BGPPeer not usable", "peer", n.Object, "problem", n.Message)
		n.Message = fmt.Sprintf("node %q: %s", r.Node, n.Message)
		r.record(ctx, &barelbv1beta1.BGPPeer{}, n)
	}
	for _, n := range r.advProblems.update(d.AdvProblems) {
		r.Log.Info("BGPAdvertisement not usable", "advertisement", n.Object, "problem", n.Message)
		n.Message = fmt.Sprintf("node %q: %s", r.Node, n.Message)
		r.record(ctx, &barelbv1beta1.BGPAdvertisement{}, n)
	}
}

// record sends an Event on the named object of barelb's namespace, read
// from the cache (an object gone meanwhile gets none).
func (r *Reconciler) record(ctx context.Context, obj client.Object, n news) {
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: n.Object}, obj); err != nil {
		r.Log.V(1).Info("no object for an Event", "name", n.Object, "reason", n.Reason, "error", err.Error())
		return
	}
	r.Recorder.Event(obj, n.Type, n.Reason, n.Message)
}

// countUpdates counts the route changes handed to each session and sets
// the prefix gauges; series of peers no longer opened are deleted.
func (r *Reconciler) countUpdates(d decision) {
	now := make(map[string][]bgp.Route, len(d.Peers))
	for _, p := range d.Peers {
		routes := d.Routes[p.Name]
		now[p.Name] = routes
		if n := routeChanges(r.sent[p.Name], routes); n > 0 {
			r.Metrics.UpdatesSent.WithLabelValues(p.Name).Add(float64(n))
		} else {
			r.Metrics.UpdatesSent.WithLabelValues(p.Name).Add(0)
		}
		r.Metrics.PrefixesAdvertised.WithLabelValues(p.Name).Set(float64(len(routes)))
	}
	for name := range r.sent {
		if _, ok := now[name]; !ok {
			r.Metrics.DeletePeer(name)
		}
	}
	r.sent = now
}

// routeChanges counts the prefixes added, changed or withdrawn from old
// to new.
func routeChanges(old, new []bgp.Route) int {
	before := make(map[netip.Prefix]int32, len(old)) // index in old
	for i, r := range old {
		before[r.Prefix.Masked()] = int32(i)
	}
	n := 0
	for _, r := range new {
		p := r.Prefix.Masked()
		if i, ok := before[p]; !ok || !sameRoute(old[i], r) {
			n++
		}
		delete(before, p)
	}
	return n + len(before)
}

func sameRoute(a, b bgp.Route) bool {
	return a.Prefix == b.Prefix && a.LocalPref == b.LocalPref && slices.Equal(a.Communities, b.Communities)
}
