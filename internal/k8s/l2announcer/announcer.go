package l2announcer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/election"
	"github.com/barelb/barelb/internal/k8s/heartbeat"
	"github.com/barelb/barelb/internal/k8s/servicecache"
	"github.com/barelb/barelb/internal/layer2"
)

// Members is the speakers' membership as the announcer needs it.
type Members interface {
	// Alive names the nodes whose speaker is a live member. ok is false
	// when membership could not form; node readiness stands in then.
	Alive() (alive map[string]bool, ok bool)
	// Left tells whether the speaker of node name stopped on purpose
	// (and answers on only for its hand-over).
	Left(name string) bool
}

// Network is this node's network: its interfaces, and a responder per
// interface.
type Network interface {
	Interfaces() ([]layer2.Interface, error)
	// Responder returns the responder of interface name, opening it if
	// needed; one it opens reports what it sees to report (the
	// Reconciler asking for it: the two need each other, and this way
	// each is whole when made).
	Responder(ctx context.Context, name string, report Reporter) (Responder, error)
}

// Reporter is told what a responder sees; the Reconciler is one.
type Reporter interface {
	HandleConflict(layer2.Conflict)
	HandleProbed(netip.Addr)
	HandlePeerClaim(layer2.PeerClaim)
}

// reportingTo returns o with report's handlers as the responder's
// OnConflict, OnProbed and OnPeerClaim (a nil report: o as it is).
func reportingTo(o layer2.Options, report Reporter) layer2.Options {
	if report == nil {
		return o
	}
	o.OnConflict, o.OnProbed, o.OnPeerClaim = report.HandleConflict, report.HandleProbed, report.HandlePeerClaim
	return o
}

// Responder answers for addresses on one interface.
type Responder interface {
	Announce(netip.Addr, layer2.AnnounceOptions) error
	Reannounce(netip.Addr)
	Withdraw(netip.Addr)
	// Owns tells whether an announced address is answered (not while its
	// probe runs, nor while another host uses it).
	Owns(netip.Addr) bool
	// InConflict tells whether an announced address is not answered
	// because another host on the link uses it.
	InConflict(netip.Addr) bool
	// Yield stops answering an address another speaker keeps, until that
	// one goes quiet; Resume answers it again at once; Yielded tells.
	Yield(netip.Addr) bool
	Resume(netip.Addr) bool
	Yielded(netip.Addr) bool
	// Check asks the link who answers for an answered address; another
	// speaker's answer comes as a peer claim.
	Check(netip.Addr)
}

const (
	// ReasonAnnounced is the Event reason when a node starts announcing a
	// Service's addresses.
	ReasonAnnounced = "nodeAssigned"
	// ReasonAddressConflict is the Warning Event reason when another host
	// on the LAN uses a Service's address.
	ReasonAddressConflict = "AddressConflict"
)

// planKey is the one request every change maps to: the plan is computed
// for all addresses at once, so a burst of changes costs one computation.
var planKey = reconcile.Request{NamespacedName: types.NamespacedName{Name: "layer2-plan"}}

// Reconciler keeps this node's answers in step with the plan.
type Reconciler struct {
	Client    client.Client
	Recorder  record.EventRecorder
	Log       logr.Logger
	Node      string
	Namespace string
	LBClass   string
	Members   Members
	Network   Network
	// Services is where Services, their endpoints' nodes and the
	// ServiceL2Status objects are read; Setup makes one when it is nil
	// (a speaker shares one among its reconcilers).
	Services *servicecache.Cache
	// Observer, when set, is told every plan (metrics and checks).
	Observer *Observer
	// Peers, when set, hands this speaker's reading of the cluster to
	// speakers that start while the API server is away, and gives this
	// one the others' when it does (see PeerTable).
	Peers *PeerTable
	// Speakers, when set, tells which speakers run (their Leases): where
	// memberlist cannot tell, only their nodes are elected (see
	// heartbeat.FallbackAlive), not every Ready node.
	Speakers *heartbeat.Speakers
	// DrainOnCordon makes a cordoned node (spec.unschedulable) drained,
	// as if labelled barelb.io/drain (the speaker's --drain-on-cordon;
	// every speaker must be given the same).
	DrainOnCordon bool

	mu sync.Mutex
	// answering is what this node answers for: address → interfaces.
	answering map[netip.Addr][]string
	// announced are the Services this node announces.
	announced map[string]bool
	// alive is the membership the last plan was made with.
	alive map[string]bool
	// conflictBook is what the Services were told of conflicts; plan
	// state, like the fields above, under mu.
	conflictBook conflictBook

	// conflictChanges wakes the reconciler when a responder reports a
	// conflict; Setup makes it.
	conflictChanges chan event.GenericEvent
	// conflictInbox keeps the responders' conflict reports for the next
	// plan; it has its own lock, as they come while a plan holds mu.
	conflictInbox conflictInbox

	// view is the last plan's, for HandlePeerClaim; contests what it
	// found (see contest.go).
	view     atomic.Pointer[planView]
	contests contests
	// statuses writes the ServiceL2Statuses; Setup makes it.
	statuses *statusWriter
	// standAside: how long plans have found this speaker left out of the
	// others' memberlist (see fallbackAlive).
	standAside standAside
	// lostAt is when memberlist lost each speaker that still has a fresh
	// Lease (see checkLeases).
	lostAt map[string]time.Time
	// releases are the addresses handed over make-before-break after a
	// drain (release.go).
	releases releases
	// handingOver are the last plan's hand-overs (for the log).
	handingOver map[netip.Addr]release
	// planned is set once a plan has been made (see Planned).
	planned atomic.Bool
}

// Planned tells whether this speaker has made a plan: it has read the
// cluster from the API, and may be elected by the others (a speaker that
// starts while the API server is away has not, and must not be).
func (r *Reconciler) Planned() bool { return r.planned.Load() }

// HandleConflict takes a responder's conflict report (wire it to
// layer2.Options.OnConflict) and recomputes the plan, which tells the
// Services.
func (r *Reconciler) HandleConflict(c layer2.Conflict) {
	r.conflictInbox.add(c)
	r.wake()
}

// HandleProbed takes a responder's news that a probed address is now
// answered (wire it to layer2.Options.OnProbed) and recomputes the plan,
// which reports it.
func (r *Reconciler) HandleProbed(netip.Addr) { r.wake() }

func (r *Reconciler) wake() {
	if r.conflictChanges == nil {
		return
	}
	select {
	case r.conflictChanges <- event.GenericEvent{Object: &corev1.Service{}}:
	default: // a plan is pending already
	}
}

// viewSource is a Members that knows whether this speaker's view of who
// died is suspect, and which lost speakers may still answer
// (MemberlistMembers).
type viewSource interface {
	ViewSuspect() bool
	MayAnswer(node string) bool
}

// takeOverProbes says which take-overs this node probes (see decide).
// Without memberlist there is no view to doubt and no echo to tell.
func (r *Reconciler) takeOverProbes(in *inputs, alive map[string]bool, membershipOK bool) takeOverProbes {
	v, ok := r.Members.(viewSource)
	if !ok || !membershipOK {
		return takeOverProbes{}
	}
	out := takeOverProbes{all: v.ViewSuspect()}
	for _, n := range in.nodes {
		if n.Name == r.Node || listed(alive, n.Name) || r.Members.Left(n.Name) || !v.MayAnswer(n.Name) {
			continue
		}
		if out.from == nil {
			out.from = map[string]bool{}
		}
		out.from[n.Name] = true
	}
	return out
}

// subnetSource is a Members that knows the speakers' subnets
// (MemberlistMembers): the election then holds each address to the nodes
// on its subnet.
type subnetSource interface {
	Subnets() map[string][]netip.Prefix
}

// nodeSubnets gives the plan's nodes their subnets: what memberlist's
// metadata says (kept for departed speakers since this one started),
// else what the speaker's Lease says (kept after a crash, read alike by a
// speaker started since): every speaker must give the election the same
// subnets, or they elect differently.
func (r *Reconciler) nodeSubnets(ctx context.Context, in *inputs, fromAPI bool) error {
	var fromMeta, fromLease map[string][]netip.Prefix
	if s, ok := r.Members.(subnetSource); ok {
		fromMeta = s.Subnets()
	}
	// The Leases cannot be read while the API server is away.
	if r.Speakers != nil && fromAPI {
		var err error
		if fromLease, err = r.Speakers.Subnets(ctx); err != nil {
			return err
		}
	}
	for i := range in.nodes {
		name := in.nodes[i].Name
		if s, ok := fromMeta[name]; ok {
			in.nodes[i].Subnets = s
		} else {
			in.nodes[i].Subnets = fromLease[name]
		}
	}
	return nil
}

// Reconcile recomputes the plan and applies this node's part of it.
func (r *Reconciler) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	// An unsynced cache would make this node drop the statuses and
	// addresses of Services not listed yet.
	if !r.Services.WaitForSync(ctx) {
		return reconcile.Result{}, ctx.Err()
	}
	alive, membershipOK := r.Members.Alive()
	in, err := read(ctx, r.Client, r.Services, r.Namespace, r.LBClass, alive, membershipOK, r.DrainOnCordon)
	if err != nil {
		return reconcile.Result{}, err
	}
	var warnRetry time.Duration
	if !membershipOK && r.Speakers != nil {
		if warnRetry, err = r.fallbackAlive(ctx, in, time.Now()); err != nil {
			return reconcile.Result{}, err
		}
	}
	if r.Peers != nil {
		r.Peers.readFromAPI()
	}
	retry, err := r.planAndApply(ctx, in, alive, membershipOK, r.lastAnnouncers(), true)
	if warnRetry > 0 && (retry == 0 || warnRetry < retry) {
		retry = warnRetry
	}
	return reconcile.Result{RequeueAfter: retry}, err
}

// planAndApply computes the plan from in and applies this node's part of it.
// lastAnnouncers are the Services a ServiceL2Status names a node for,
// with that node (see decide). fromAPI is false for a plan made from another speaker's
// table while the API server is away: the speakers' Leases cannot be
// read then, nor statuses written. It returns how soon to plan again.
func (r *Reconciler) planAndApply(ctx context.Context, in *inputs, alive map[string]bool, membershipOK bool, lastAnnouncers map[string]string, fromAPI bool) (time.Duration, error) {
	// A speaker that reappears (a restart, a healed partition) may have
	// been answering on its side all along; whoever keeps an address
	// tells the LAN again, so that neighbours drop the other's MAC.
	rejoined := anyRejoined(r.alive, alive)
	r.alive = alive
	if err := r.nodeSubnets(ctx, in, fromAPI); err != nil {
		return 0, err
	}
	host, err := r.Network.Interfaces()
	if err != nil {
		return 0, fmt.Errorf("reading interfaces: %w", err)
	}
	plan := election.PlanL2(in.services, in.pools, in.advs, in.nodes)
	// The maps are made at the size this node's part of the plan had last
	// time: at 10,000 addresses, growing them is much of a plan's garbage.
	part := decide(plan, r.Node, host, lastAnnouncers, r.takeOverProbes(in, alive, membershipOK), len(r.answering))
	for _, a := range part.noInterface {
		r.Log.Info("won an address but no interface may answer for it", "address", a.Address.String(), "named", a.Interfaces)
	}
	want, services, servicesOf, probe, keys, owners := part.want, part.services, part.servicesOf, part.probe, part.keys, part.owners
	viewAlive := alive
	if !membershipOK {
		viewAlive = make(map[string]bool, len(in.nodes))
		for _, n := range in.nodes {
			if n.Alive {
				viewAlive[n.Name] = true
			}
		}
	}
	// Addresses that a drain or a returning speaker moves are answered on
	// until their new announcer is heard (release.go); they are no longer
	// this node's in the view, the statuses or the metrics.
	handOvers, releaseRetry := r.releases.next(r.Node, in.nodes, viewAlive, r.answering, want, plan, time.Now())
	for ip, h := range handOvers {
		if _, ok := r.handingOver[ip]; !ok {
			r.Log.Info("address moves to another node (a drain, or its speaker is back); answering on until it announces", "address", ip.String(), "successor", h.successor)
		}
	}
	for ip, h := range r.handingOver {
		if _, ok := handOvers[ip]; !ok {
			r.Log.Info("hand-over done; withdrawing", "address", ip.String(), "successor", h.successor,
				"successorHeard", time.Now().Before(h.until))
		}
	}
	r.handingOver = handOvers
	if err := r.apply(ctx, want, rejoined, probe, handOvers); err != nil {
		return 0, err
	}
	r.view.Store(&planView{alive: viewAlive, answering: want, keys: keys, owners: owners})
	var leaseRetry time.Duration
	if membershipOK && fromAPI {
		if leaseRetry, err = r.checkLeases(ctx, alive, time.Now()); err != nil {
			return 0, err
		}
	}
	contestRetry, err := r.settleContests(ctx, in, viewAlive, want, servicesOf)
	if err != nil {
		return 0, err
	}
	for _, d := range []time.Duration{leaseRetry, releaseRetry} {
		if d > 0 && (contestRetry == 0 || d < contestRetry) {
			contestRetry = d
		}
	}
	r.Observer.planned(ctx, in, plan, want, host)
	unanswered, err := r.conflicts(ctx, in, want, servicesOf)
	if err != nil {
		return 0, err
	}
	if m := r.Observer.metrics(); m != nil {
		// What the node answers for: not what it is probing, what
		// another host uses, nor what it yielded to another speaker.
		m.AddressesAnnounced.Set(float64(len(want) - len(unanswered)))
	}
	// A Service with an address not answered yet (its probe runs) or in
	// conflict gets no ServiceL2Status and no Event yet: whoever
	// announces it next probes again.
	for ip := range unanswered {
		for _, key := range servicesOf[ip] {
			delete(services, key)
		}
	}
	if fromAPI {
		r.report(in, want, services)
	}
	r.planned.Store(true)
	return contestRetry, nil
}

// standAsideWarning is how long a speaker stands aside for the others'
// memberlist before it says it cannot join: a speaker that has just
// started stands aside too, for the moment its join takes.
const standAsideWarning = 2 * time.Second

// fallbackAlive replaces node readiness in the plan's nodes with the
// what the speakers' Leases say (heartbeat.FallbackAlive). It returns how
// soon to plan again to say that this speaker still cannot join.
func (r *Reconciler) fallbackAlive(ctx context.Context, in *inputs, now time.Time) (time.Duration, error) {
	running, err := r.Speakers.Running(ctx, now)
	if err != nil {
		return 0, err
	}
	ready := make(map[string]bool, len(in.nodes))
	for _, n := range in.nodes {
		ready[n.Name] = n.Alive
	}
	alive := heartbeat.FallbackAlive(r.Node, ready, running)
	for i := range in.nodes {
		in.nodes[i].Alive = alive[in.nodes[i].Name]
	}
	warn, retry := r.standAside.note(now, len(running) > 0 && len(alive) == 0)
	if warn {
		r.Log.Info("WARNING: this speaker cannot join the other speakers' memberlist, which they formed without it (check the memberlist secret and that TCP and UDP of the memberlist port are open between nodes); it answers for no address meanwhile",
			"since", r.standAside.since.Format(time.RFC3339))
	}
	return retry, nil
}

// standAside follows how long plans have found this speaker left out of
// the others' memberlist.
type standAside struct {
	// since is when they began to; zero when the last plan did not.
	since time.Time
	// told is set once the warning was given for this stretch.
	told bool
}

// note records whether the plan at now stands aside, and tells whether
// to warn now, or else how soon to plan again to see whether to.
func (s *standAside) note(now time.Time, standing bool) (warn bool, retry time.Duration) {
	if !standing {
		*s = standAside{}
		return false, 0
	}
	if s.since.IsZero() {
		s.since = now
	}
	if wait := standAsideWarning - now.Sub(s.since); wait > 0 {
		return false, wait
	}
	warn, s.told = !s.told, true
	return warn, 0
}

// lastAnnouncers names the Services whose ServiceL2Status names a node,
// with that node: their addresses are known to the cluster (not probed
// as new), and whoever takes them over probes only when that node may
// still answer (see decide).
func (r *Reconciler) lastAnnouncers() map[string]string {
	out := map[string]string{}
	r.Services.EachStatus(func(s *servicecache.Status) {
		if s.Status.Node != "" {
			out[s.Status.ServiceNamespace+"/"+s.Status.ServiceName] = s.Status.Node
		}
	})
	return out
}

// conflicts returns the wanted addresses not answered on any interface
// (probed, or in conflict on some interface), and tells their Services
// once per conflict (conflictBook): a Warning Event for a new conflict,
// found by a probe or seen while answering.
func (r *Reconciler) conflicts(ctx context.Context, in *inputs, want map[netip.Addr][]string, servicesOf map[netip.Addr][]string) (map[netip.Addr]bool, error) {
	// The Services of an address, for the few addresses in conflict.
	servicesAt := func(ip netip.Addr) []*servicecache.Service {
		var out []*servicecache.Service
		for _, key := range servicesOf[ip] {
			if svc := in.byKey[key]; svc != nil {
				out = append(out, svc)
			}
		}
		return out
	}
	facts := conflictFacts{want: want}
	facts.probed, facts.seen = r.conflictInbox.take(want)
	for ip, names := range want {
		inConflict, answered := false, false
		for _, name := range names {
			resp, err := r.Network.Responder(ctx, name, r)
			if err != nil {
				return nil, err
			}
			inConflict = inConflict || resp.InConflict(ip)
			answered = answered || resp.Owns(ip)
		}
		if inConflict {
			if facts.inConflict == nil {
				facts.inConflict = map[netip.Addr]bool{}
			}
			facts.inConflict[ip] = true
		}
		if !answered {
			if facts.notAnswered == nil {
				facts.notAnswered = map[netip.Addr]bool{}
			}
			facts.notAnswered[ip] = true
		}
	}
	news := r.conflictBook.next(facts)
	for _, n := range news.notes {
		r.tellConflict(n, servicesAt(n.address))
	}
	return news.unanswered, nil
}

// tellConflict logs a conflict note and makes it a Warning Event of the
// address's Services.
func (r *Reconciler) tellConflict(n conflictNote, services []*servicecache.Service) {
	switch n.kind {
	case noteInUse:
		r.Log.Info("address in use by another host; not announcing it", "address", n.address.String(), "mac", n.mac.String(), "interface", n.iface)
		for _, svc := range services {
			r.Recorder.Eventf(svc.Ref(), corev1.EventTypeWarning, ReasonAddressConflict,
				"address %s is in use by another host (MAC %s, on interface %s of node %q); not announcing it until it is free",
				n.address, n.mac, n.iface, r.Node)
		}
	case noteOver:
		r.Log.Info("address conflict over; announcing", "address", n.address.String())
	case noteClaimed:
		r.Log.Info("another host claims an announced address; defending it", "address", n.address.String(), "mac", n.mac.String(), "interface", n.iface)
		for _, svc := range services {
			r.Recorder.Eventf(svc.Ref(), corev1.EventTypeWarning, ReasonAddressConflict,
				"another host (MAC %s, on interface %s of node %q) claims address %s; still announcing and defending it",
				n.mac, n.iface, r.Node, n.address)
		}
	}
}

// apply withdraws first, so that a lost address stops being answered at
// once (unless it is handed over: see release.go), then announces (after
// a probe for the addresses in probe); with reannounce, addresses kept
// are announced again too (not those handed over: that would point the
// LAN back at this node).
func (r *Reconciler) apply(ctx context.Context, want map[netip.Addr][]string, reannounce bool, probe map[netip.Addr]bool, handOvers map[netip.Addr]release) error {
	if r.answering == nil {
		r.answering = map[netip.Addr][]string{}
	}
	for ip, had := range r.answering {
		for _, name := range had {
			if !contains(want[ip], name) && !contains(handOvers[ip].ifaces, name) {
				resp, err := r.Network.Responder(ctx, name, r)
				if err != nil {
					return err
				}
				resp.Withdraw(ip)
			}
		}
	}
	for ip, names := range want {
		for _, name := range names {
			resp, err := r.Network.Responder(ctx, name, r)
			if err != nil {
				return err
			}
			if contains(r.answering[ip], name) {
				if reannounce {
					resp.Reannounce(ip)
				}
				continue
			}
			if err := resp.Announce(ip, layer2.AnnounceOptions{Probe: probe[ip]}); err != nil {
				return fmt.Errorf("announcing %s on %s: %w", ip, name, err)
			}
			r.Log.Info("announcing", "address", ip.String(), "interface", name, "probe", probe[ip])
		}
	}
	if len(handOvers) > 0 {
		all := make(map[netip.Addr][]string, len(want)+len(handOvers))
		for ip, names := range want {
			all[ip] = names
		}
		for ip, h := range handOvers {
			if _, ok := all[ip]; !ok {
				all[ip] = h.ifaces
			}
		}
		want = all
	}
	r.answering = want
	return nil
}

// report hands the statuses of the Services this node announces to the
// status writer, which writes them (and deletes the ones of Services this
// node no longer announces) in the background, and tells a Service when
// this node starts announcing it.
func (r *Reconciler) report(in *inputs, want map[netip.Addr][]string, services map[string]netip.Addr) {
	statuses := make(map[string]statusWant, len(services))
	for key, ip := range services {
		svc := in.byKey[key]
		if svc == nil {
			continue
		}
		ifaces := want[ip]
		if !sort.StringsAreSorted(ifaces) {
			ifaces = append([]string(nil), ifaces...) // want's slices are r.answering's
			sort.Strings(ifaces)
		}
		statuses[key] = statusWant{svc: svc, ifaces: ifaces}
		if !r.announced[key] {
			r.Recorder.Eventf(svc.Ref(), corev1.EventTypeNormal, ReasonAnnounced, "announcing from node %q with protocol \"layer2\" on %s", r.Node, strings.Join(want[ip], ", "))
		}
	}
	r.announced = make(map[string]bool, len(services))
	for key := range services {
		r.announced[key] = true
	}
	r.statuses.set(statuses)
}

// isStale tells a write refused because it was based on an outdated
// cache: the object was created or changed meanwhile.
func isStale(err error) bool {
	return err != nil && (apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err))
}

// statusName is the ServiceL2Status name of a Service: readable, and
// unique thanks to a hash of the full key.
func statusName(namespace, name string) string {
	sum := sha256.Sum256([]byte(namespace + "/" + name))
	base := namespace + "-" + name
	if len(base) > 40 {
		base = base[:40]
	}
	return strings.TrimRight(base, "-.") + "-" + hex.EncodeToString(sum[:4])
}

// writeStatus makes the ServiceL2Status of svc say that this node
// announces its addresses on ifaces (sorted). cached is the object in the
// cache (nil when there is none); it is shared with the cache and never
// modified.
func (r *Reconciler) writeStatus(ctx context.Context, cached *servicecache.Status, svc *servicecache.Service, ifaces []string) error {
	if cached != nil && r.statusSays(cached.Status, svc, ifaces) {
		return nil
	}
	obj := &barelbv1beta1.ServiceL2Status{ObjectMeta: metav1.ObjectMeta{
		Name: statusName(svc.Namespace, svc.Name), Namespace: r.Namespace,
		Labels: map[string]string{barelbv1beta1.LabelServiceName: svc.Name, barelbv1beta1.LabelServiceNamespace: svc.Namespace},
	}}
	if cached == nil {
		if err := r.Client.Create(ctx, obj); err != nil {
			return fmt.Errorf("writing ServiceL2Status of %s/%s: %w", svc.Namespace, svc.Name, err)
		}
	} else {
		obj.ResourceVersion = cached.ResourceVersion
	}
	obj.Status = barelbv1beta1.ServiceL2StatusStatus{Node: r.Node, ServiceName: svc.Name, ServiceNamespace: svc.Namespace}
	for _, a := range svc.Addresses {
		obj.Status.Addresses = append(obj.Status.Addresses, a.String())
	}
	for _, name := range ifaces {
		obj.Status.Interfaces = append(obj.Status.Interfaces, barelbv1beta1.InterfaceInfo{Name: name})
	}
	if err := r.Client.Status().Update(ctx, obj); err != nil {
		return fmt.Errorf("writing ServiceL2Status of %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	return nil
}

// statusSays tells whether status is what writeStatus would write: this
// node, the Service's names and addresses, and the sorted interfaces. It
// allocates nothing, as it runs for every announced Service on every event.
func (r *Reconciler) statusSays(status barelbv1beta1.ServiceL2StatusStatus, svc *servicecache.Service, ifaces []string) bool {
	if status.Node != r.Node || status.ServiceName != svc.Name || status.ServiceNamespace != svc.Namespace ||
		len(status.Addresses) != len(svc.Addresses) || len(status.Interfaces) != len(ifaces) {
		return false
	}
	for i, a := range svc.Addresses {
		if written, err := netip.ParseAddr(status.Addresses[i]); err != nil || written != a {
			return false
		}
	}
	for i, name := range ifaces {
		if status.Interfaces[i] != (barelbv1beta1.InterfaceInfo{Name: name}) {
			return false
		}
	}
	return true
}

// dropStatus deletes a Service's ServiceL2Status if it still names this
// node: another node that took the Service over has rewritten it, and its
// write must not be deleted (the resource version guards the race).
// cached is the object in the cache, nil when there is none.
func (r *Reconciler) dropStatus(ctx context.Context, cached *servicecache.Status, key string) error {
	if cached == nil || cached.Status.Node != r.Node {
		return nil
	}
	obj := &barelbv1beta1.ServiceL2Status{ObjectMeta: metav1.ObjectMeta{Name: cached.Name, Namespace: cached.Namespace}}
	err := r.Client.Delete(ctx, obj, client.Preconditions{ResourceVersion: &cached.ResourceVersion})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("deleting ServiceL2Status of %s: %w", key, err)
	}
	return nil
}

func contains(names []string, name string) bool {
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}
