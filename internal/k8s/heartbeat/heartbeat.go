package heartbeat

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const (
	// LabelComponent marks the speakers' Leases (value ComponentSpeaker).
	LabelComponent   = "barelb.io/component"
	ComponentSpeaker = "speaker"
	// AnnotationMemberlist says how the speaker's memberlist stands: one
	// of the Memberlist* values.
	AnnotationMemberlist = "barelb.io/memberlist"
	// AnnotationMACs lists the MAC addresses of the speaker's node,
	// separated by commas.
	AnnotationMACs = "barelb.io/macs"
	// AnnotationBGPEstablished lists the BGPPeers whose sessions from the
	// speaker's node are established, separated by commas (empty: none).
	// The controller reads it for the Services' barelb.io/Announced
	// condition: a route handed to a session that is down reaches no
	// router. A session going up or down is one Lease write, not one
	// write per Service.
	AnnotationBGPEstablished = "barelb.io/bgp-established"
	// AnnotationSubnets lists the subnets of the interfaces of the
	// speaker's node that may answer ARP/NDP, separated by commas (for
	// the subnet-aware election).
	AnnotationSubnets = "barelb.io/subnets"

	// RenewInterval is how often a speaker renews its Lease, and
	// Duration how long a Lease that is not renewed stays fresh.
	RenewInterval = 5 * time.Second
	Duration      = 20 * time.Second
)

// How a speaker's memberlist stands.
const (
	// MemberlistFormed: it sees other speakers; memberlist decides who is
	// alive.
	MemberlistFormed = "formed"
	// MemberlistFallback: it has not seen another speaker yet; the
	// Leases decide.
	MemberlistFallback = "fallback"
	// MemberlistOff: run with --memberlist=false; the Leases decide.
	MemberlistOff = "off"
)

// LeaseName is the name of the Lease of node's speaker.
func LeaseName(node string) string { return "speaker-" + node }

// State is what a speaker's Lease says besides that it runs.
type State struct {
	Memberlist string
	MACs       []net.HardwareAddr
	// BGPEstablished names the BGPPeers with an established session.
	BGPEstablished []string
	// Subnets are nil when the speaker does not say (an earlier one).
	Subnets []netip.Prefix
}

func (s State) annotations() map[string]string {
	macs := make([]string, 0, len(s.MACs))
	for _, m := range s.MACs {
		macs = append(macs, m.String())
	}
	sort.Strings(macs)
	peers := slices.Clone(s.BGPEstablished)
	sort.Strings(peers)
	a := map[string]string{AnnotationMemberlist: s.Memberlist, AnnotationMACs: strings.Join(macs, ","),
		AnnotationBGPEstablished: strings.Join(peers, ",")}
	if len(s.Subnets) > 0 {
		subnets := make([]string, 0, len(s.Subnets))
		for _, p := range s.Subnets {
			subnets = append(subnets, p.String())
		}
		a[AnnotationSubnets] = strings.Join(subnets, ",")
	}
	return a
}

// Writer keeps this speaker's Lease.
type Writer struct {
	Client    client.Client
	Log       logr.Logger
	Namespace string
	Node      string
	// State tells what the Lease says; it is asked every second, and a
	// change is written at once.
	State func() State
}

// requestTimeout bounds one Lease request: the API server may be gone.
const requestTimeout = 5 * time.Second

// Start renews the Lease until ctx ends, then deletes it, so that the
// other speakers stop counting this one at once.
func (w *Writer) Start(ctx context.Context) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var written map[string]string
	var renewed time.Time
	for {
		state := w.State().annotations()
		if !equal(state, written) || time.Since(renewed) >= RenewInterval {
			if err := w.renew(ctx, state); err != nil {
				if ctx.Err() == nil {
					w.Log.V(1).Info("Renewing this speaker's Lease failed", "error", err.Error())
				}
			} else {
				written, renewed = state, time.Now()
			}
		}
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
			defer cancel()
			lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: w.Namespace, Name: LeaseName(w.Node)}}
			if err := w.Client.Delete(dctx, lease); err != nil && !apierrors.IsNotFound(err) {
				w.Log.Info("Deleting this speaker's Lease failed; the others drop it when it expires", "error", err.Error())
			}
			return nil
		case <-tick.C:
		}
	}
}

func equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// renew writes the Lease with a fresh renewTime.
func (w *Writer) renew(ctx context.Context, annotations map[string]string) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	now := metav1.NewMicroTime(time.Now())
	key := client.ObjectKey{Namespace: w.Namespace, Name: LeaseName(w.Node)}
	var lease coordinationv1.Lease
	err := w.Client.Get(ctx, key, &lease)
	if apierrors.IsNotFound(err) {
		lease = coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name,
				Labels: map[string]string{LabelComponent: ComponentSpeaker}, Annotations: annotations},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(w.Node), LeaseDurationSeconds: ptr.To(int32(Duration / time.Second)),
				AcquireTime: &now, RenewTime: &now},
		}
		if err := w.Client.Create(ctx, &lease); err != nil {
			return fmt.Errorf("creating Lease %s: %w", key, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading Lease %s: %w", key, err)
	}
	if lease.Labels == nil {
		lease.Labels = map[string]string{}
	}
	lease.Labels[LabelComponent] = ComponentSpeaker
	lease.Annotations = annotations
	lease.Spec.HolderIdentity = ptr.To(w.Node)
	lease.Spec.LeaseDurationSeconds = ptr.To(int32(Duration / time.Second))
	lease.Spec.RenewTime = &now
	if err := w.Client.Update(ctx, &lease); err != nil {
		return fmt.Errorf("renewing Lease %s: %w", key, err)
	}
	return nil
}

// Speaker is a running speaker as its Lease says.
type Speaker struct {
	Node string
	State
	// RenewedAt is when this speaker last saw the Lease renewed, on its
	// own clock.
	RenewedAt time.Time
}

// Speakers reads the speakers' Leases and tells which are fresh.
type Speakers struct {
	Reader    client.Reader
	Namespace string

	mu sync.Mutex
	// seen is, per node, the last renewTime seen and when this speaker
	// saw it change.
	seen map[string]observation
	// last is Running's last answer.
	last map[string]Speaker
}

type observation struct {
	renew string
	at    time.Time
}

// Running returns the speakers whose Lease is fresh at now, by node.
func (s *Speakers) Running(ctx context.Context, now time.Time) (map[string]Speaker, error) {
	var leases coordinationv1.LeaseList
	if err := s.Reader.List(ctx, &leases, client.InNamespace(s.Namespace), client.MatchingLabels{LabelComponent: ComponentSpeaker}); err != nil {
		return nil, fmt.Errorf("listing the speakers' Leases: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = map[string]observation{}
	}
	out := map[string]Speaker{}
	present := map[string]bool{}
	for i := range leases.Items {
		l := &leases.Items[i]
		if l.Spec.HolderIdentity == nil || l.Spec.RenewTime == nil {
			continue
		}
		node := *l.Spec.HolderIdentity
		present[node] = true
		renew := l.Spec.RenewTime.Format(time.RFC3339Nano)
		o, known := s.seen[node]
		switch {
		case !known:
			// First sight: trust the Lease's own clock, once.
			o = observation{renew: renew, at: l.Spec.RenewTime.Time}
			if o.at.After(now) {
				o.at = now
			}
		case o.renew != renew:
			o = observation{renew: renew, at: now}
		}
		s.seen[node] = o
		if !Fresh(o.at, now) {
			continue
		}
		out[node] = Speaker{Node: node, State: parseState(l.Annotations), RenewedAt: o.at}
	}
	for node := range s.seen {
		if !present[node] {
			delete(s.seen, node)
		}
	}
	s.last = out
	return out, nil
}

// NodeOf names the running speaker whose node has mac, as of the last
// Running (the first in name order when several do).
func (s *Speakers) NodeOf(mac net.HardwareAddr) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	found := ""
	for node, sp := range s.last {
		for _, m := range sp.MACs {
			if bytes.Equal(m, mac) && (found == "" || node < found) {
				found = node
			}
		}
	}
	return found, found != ""
}

// Watch calls changed whenever the running speakers or what their Leases
// say change, looking every interval until ctx ends: a Lease that is no
// longer renewed changes nothing in the API, only here, with time.
func (s *Speakers) Watch(ctx context.Context, interval time.Duration, changed func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	last := ""
	for {
		if running, err := s.Running(ctx, time.Now()); err == nil {
			if sum := summary(running); sum != last {
				last = sum
				changed()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// summary is the running speakers and their states, as one string.
func summary(running map[string]Speaker) string {
	var parts []string
	for node, sp := range running {
		parts = append(parts, node+"="+sp.Memberlist)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// Fresh tells whether a Lease last seen renewed at renewed is fresh at
// now.
func Fresh(renewed, now time.Time) bool { return now.Sub(renewed) < Duration }

func parseState(annotations map[string]string) State {
	st := State{Memberlist: annotations[AnnotationMemberlist]}
	for _, m := range strings.Split(annotations[AnnotationMACs], ",") {
		if mac, err := net.ParseMAC(strings.TrimSpace(m)); err == nil {
			st.MACs = append(st.MACs, mac)
		}
	}
	if v := annotations[AnnotationSubnets]; v != "" {
		for _, p := range strings.Split(v, ",") {
			prefix, err := netip.ParsePrefix(strings.TrimSpace(p))
			if err != nil {
				// Part of them would hold the node to too few addresses.
				return State{Memberlist: st.Memberlist, MACs: st.MACs}
			}
			st.Subnets = append(st.Subnets, prefix)
		}
	}
	return st
}

// Subnets returns the subnets every speaker's Lease names, fresh or not
// (a crashed speaker's Lease stays with what it last said), by node; a
// Lease that names none is absent.
func (s *Speakers) Subnets(ctx context.Context) (map[string][]netip.Prefix, error) {
	var leases coordinationv1.LeaseList
	if err := s.Reader.List(ctx, &leases, client.InNamespace(s.Namespace), client.MatchingLabels{LabelComponent: ComponentSpeaker}); err != nil {
		return nil, fmt.Errorf("listing the speakers' Leases: %w", err)
	}
	out := map[string][]netip.Prefix{}
	for i := range leases.Items {
		l := &leases.Items[i]
		if l.Spec.HolderIdentity == nil {
			continue
		}
		if st := parseState(l.Annotations); st.Subnets != nil {
			out[*l.Spec.HolderIdentity] = st.Subnets
		}
	}
	return out, nil
}

// FallbackAlive decides, for a speaker whose memberlist cannot tell (off,
// or not formed), which nodes are alive: the Ready nodes whose speaker
// runs. But when another running speaker has formed a memberlist that
// this one is not in, the others decide among themselves: this one is
// cut off from them (a wrong secret, a blocked port) and must answer for
// nothing, so no node is alive in its view. Without any Lease (speakers
// of an older version), node readiness alone decides, as it did.
func FallbackAlive(self string, ready map[string]bool, running map[string]Speaker) map[string]bool {
	alive := map[string]bool{}
	if len(running) == 0 {
		for node, ok := range ready {
			alive[node] = ok
		}
		return alive
	}
	for node, sp := range running {
		if node != self && sp.Memberlist == MemberlistFormed {
			return alive
		}
	}
	for node := range running {
		if ready[node] {
			alive[node] = true
		}
	}
	return alive
}
