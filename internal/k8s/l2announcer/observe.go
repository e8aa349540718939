package l2announcer

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/barelb/barelb/internal/metrics"
)

// Event reasons of the MembershipWatch.
const (
	// ReasonMembershipFallback: memberlist has not formed; node readiness
	// decides which speakers are alive.
	ReasonMembershipFallback = "MembershipFallback"
	// ReasonMembershipFormed: memberlist formed after a fallback.
	ReasonMembershipFormed = "MembershipFormed"
)

// NewObserver makes the speaker's observability and adds what runs of it
// to mgr: metrics registered on reg (the responders' counters, addresses
// announced, membership), the Observer's strictARP and interface checks,
// and the MembershipWatch. The Reconciler of node is given the Observer
// when it is made; log is the layer-2 glue's.
//
// members is nil when the speaker runs without memberlist
// (--memberlist=false): node readiness then decides by the operator's
// choice, not as a fallback, so there is no MembershipWatch to warn about
// it; memberlist_enabled says 0 and membership_fallback stays 0.
func NewObserver(mgr ctrl.Manager, log logr.Logger, node string, members *MemberlistMembers, network *HostNetwork, reg prometheus.Registerer) (*Observer, error) {
	m, err := metrics.NewSpeaker(reg, network.ResponderCounts)
	if err != nil {
		return nil, err
	}
	metrics.SetBool(m.MemberlistEnabled, members != nil)
	metrics.SetBool(m.MembershipFallback, false)
	recorder := mgr.GetEventRecorderFor("barelb-speaker")
	o := &Observer{
		APIReader: mgr.GetAPIReader(), Recorder: recorder, Log: log.WithName("checks"),
		Node: node, Metrics: m, Interfaces: network.Interfaces,
	}
	runnables := []interface{ Start(context.Context) error }{o}
	if members != nil {
		runnables = append(runnables, &MembershipWatch{Members: members, Recorder: recorder, Log: log.WithName("membership"), Node: node, Metrics: m})
	}
	for _, runnable := range runnables {
		if err := mgr.Add(runnableFunc(runnable.Start)); err != nil {
			return nil, fmt.Errorf("adding the speaker's checks: %w", err)
		}
	}
	return o, nil
}

// runnableFunc runs on every speaker: the manager has no leader election
// there, but say so anyway.
type runnableFunc func(context.Context) error

func (f runnableFunc) Start(ctx context.Context) error { return f(ctx) }
func (runnableFunc) NeedLeaderElection() bool          { return false }

// ResponderCounts reads the counters of every open responder.
func (h *HostNetwork) ResponderCounts() []metrics.ResponderCounts {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]metrics.ResponderCounts, 0, len(h.responders))
	for name, r := range h.responders {
		s := &r.resp.Stats
		out = append(out, metrics.ResponderCounts{
			Interface:   name,
			ARPRequests: s.ARPRequests.Load(), ARPAnswers: s.ARPAnswers.Load(),
			NDPSolicitations: s.NDPSolicitations.Load(), NDPAnswers: s.NDPAnswers.Load(),
			Gratuitous: s.Gratuitous.Load(), Conflicts: s.Conflicts.Load(),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Interface < out[j].Interface })
	return out
}

// DefaultFallbackWarning is how long membership may stay unformed before
// the speaker says so loudly: a DaemonSet's speakers normally find each
// other within seconds.
const DefaultFallbackWarning = 30 * time.Second

// MembershipWatch says when memberlist cannot form and this speaker falls
// back to node readiness from the API (which cannot see a dead speaker on
// a Ready node): a log line, a Warning Event on this node and the
// membership_fallback metric; and again, with a Normal Event, once it
// forms.
type MembershipWatch struct {
	Members  *MemberlistMembers
	Recorder record.EventRecorder
	Log      logr.Logger
	Node     string
	// Metrics may be nil.
	Metrics *metrics.Speaker
	// WarnAfter is DefaultFallbackWarning when zero.
	WarnAfter time.Duration
	// Interval between looks; one second when zero.
	Interval time.Duration

	mu     sync.Mutex
	warned bool
}

// Start watches until ctx ends.
func (w *MembershipWatch) Start(ctx context.Context) error {
	interval := w.Interval
	if interval <= 0 {
		interval = time.Second
	}
	warnAfter := w.WarnAfter
	if warnAfter <= 0 {
		warnAfter = DefaultFallbackWarning
	}
	start := time.Now()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		w.look(time.Since(start) > warnAfter)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// look reads the membership once; overdue is whether an unformed
// membership has lasted long enough to warn.
func (w *MembershipWatch) look(overdue bool) {
	_, formed := w.Members.Alive()
	names := w.Members.Membership.Members()
	if w.Metrics != nil {
		w.Metrics.MemberlistMembers.Set(float64(len(names)))
		metrics.SetBool(w.Metrics.MembershipFallback, !formed)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case !formed && overdue && !w.warned:
		w.warned = true
		msg := "memberlist has not formed; deciding which speakers are alive from node readiness instead, which cannot see a dead speaker on a Ready node " +
			"(check that TCP and UDP of the memberlist port, 7946 by default, are open between nodes and that the memberlist secret is the same everywhere)"
		w.Log.Info("WARNING: "+msg, "members", names)
		w.Recorder.Event(nodeRef(w.Node), corev1.EventTypeWarning, ReasonMembershipFallback, msg)
	case formed && w.warned:
		w.warned = false
		w.Log.Info("memberlist formed after a fallback to node readiness; using it again to tell live speakers", "members", names)
		w.Recorder.Eventf(nodeRef(w.Node), corev1.EventTypeNormal, ReasonMembershipFormed,
			"memberlist formed with %d members; no longer falling back to node readiness", len(names))
	}
}
