package bgpadvertiser

import (
	"context"
	"sync"
	"time"

	"github.com/barelb/barelb/internal/bgp"
	"github.com/barelb/barelb/internal/metrics"
)

// sessionWatch turns the speaker's session events, and a periodic look at
// its sessions, into Events on the BGPPeers and the session metric.
type sessionWatch struct {
	speaker *bgp.Speaker
	metrics *metrics.SpeakerBGP
	// record sends an Event on a BGPPeer.
	record func(ctx context.Context, n news)
	// every is how often the sessions are looked at.
	every time.Duration

	mu      sync.Mutex
	tracker *sessionTracker
	pending []bgp.Event
	wake    chan struct{}
}

func newSessionWatch(node string, after time.Duration, m *metrics.SpeakerBGP) *sessionWatch {
	return &sessionWatch{metrics: m, every: time.Second, tracker: newSessionTracker(node, after), wake: make(chan struct{}, 1)}
}

// onEvent is the speaker's OnEvent: it must not block.
func (s *sessionWatch) onEvent(ev bgp.Event) {
	s.mu.Lock()
	s.pending = append(s.pending, ev)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// bfdVerdict tells the tracker that BFD declared a peer down or up; it
// is called before the session is closed, so the Event can say why.
func (s *sessionWatch) bfdVerdict(name string, down bool, diag string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tracker.bfd(name, down, diag)
}

// configure tells the sessions the node opens now.
func (s *sessionWatch) configure(infos map[string]sessionInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tracker.configure(time.Now(), infos)
}

// run handles events and looks at the sessions until ctx ends.
func (s *sessionWatch) run(ctx context.Context) {
	tick := time.NewTicker(s.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
			s.mu.Lock()
			evs := s.pending
			s.pending = nil
			var out []news
			for _, ev := range evs {
				if s.tracker.peers[ev.Peer] == nil {
					continue // removed meanwhile: its series are gone
				}
				metrics.SetBool(s.metrics.SessionUp.WithLabelValues(ev.Peer), ev.Up)
				out = append(out, s.tracker.event(ev)...)
			}
			s.mu.Unlock()
			for _, n := range out {
				s.record(ctx, n)
			}
		case <-tick.C:
			states := map[string]bgp.PeerStatus{}
			for _, st := range s.speaker.Peers() {
				states[st.Peer] = st
				metrics.SetBool(s.metrics.SessionUp.WithLabelValues(st.Peer), st.Up)
			}
			s.mu.Lock()
			out := s.tracker.check(time.Now(), states)
			s.mu.Unlock()
			for _, n := range out {
				s.record(ctx, n)
			}
		}
	}
}
