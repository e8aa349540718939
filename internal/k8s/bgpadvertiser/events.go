package bgpadvertiser

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/barelb/barelb/internal/bgp"
)

// Event reasons, on the BGPPeer object.
const (
	ReasonSessionEstablished    = "BGPSessionEstablished"
	ReasonSessionDown           = "BGPSessionDown"
	ReasonSessionNotEstablished = "BGPSessionNotEstablished"
	ReasonPeerInvalid           = "BGPPeerInvalid"
	// ReasonAdvertisementInvalid is on the BGPAdvertisement object.
	ReasonAdvertisementInvalid = "BGPAdvertisementInvalid"
)

// DefaultNotEstablishedAfter is how long a session may stay unestablished
// before a BGPSessionNotEstablished Event says so: three connection
// attempts at the default connectTime.
const DefaultNotEstablishedAfter = 15 * time.Second

// news is an Event to send.
type news struct {
	Object  string // the BGPPeer's (or BGPAdvertisement's) name
	Type    string // corev1.EventTypeNormal or EventTypeWarning
	Reason  string
	Message string
}

// sessionInfo is what the Event messages say of a configured session.
type sessionInfo struct {
	Address netip.Addr
	// Interface is an unnumbered session's interface (Address is then
	// not set).
	Interface string
	// Password is set when the session uses TCP MD5; PasswordSecret names
	// its Secret ("" for spec.password).
	Password       bool
	PasswordSecret string
	Namespace      string
}

// peer names the session's peer in messages.
func (i sessionInfo) peer() string {
	if i.Interface != "" {
		return "the router on interface " + i.Interface
	}
	return i.Address.String()
}

// sessionTracker decides the session Events of one node from the
// speaker's session events and a periodic look at the sessions: one
// Event per change, never one per resync.
type sessionTracker struct {
	node  string
	after time.Duration
	peers map[string]*trackedSession
}

type trackedSession struct {
	info sessionInfo
	up   bool
	// downSince is when the session was configured or last went down.
	downSince time.Time
	// told is set once BGPSessionNotEstablished was sent for this wait.
	told bool
	// bfdDown says why BFD declared the peer down, until BFD is up again.
	bfdDown string
}

func newSessionTracker(node string, after time.Duration) *sessionTracker {
	if after <= 0 {
		after = DefaultNotEstablishedAfter
	}
	return &sessionTracker{node: node, after: after, peers: map[string]*trackedSession{}}
}

// configure sets the sessions the node opens. A new session, or one whose
// settings changed (a fixed password makes a new session), starts its
// wait now; gone ones are forgotten.
func (t *sessionTracker) configure(now time.Time, sessions map[string]sessionInfo) {
	for name := range t.peers {
		if _, ok := sessions[name]; !ok {
			delete(t.peers, name)
		}
	}
	for name, info := range sessions {
		if s, ok := t.peers[name]; ok && s.info == info {
			continue
		}
		old := t.peers[name]
		s := &trackedSession{info: info, downSince: now}
		if old != nil && old.up {
			s.up = true
		}
		t.peers[name] = s
	}
}

// bfd takes BFD's verdict on a peer: down (with BFD's diagnostic) makes
// the speaker close the session, and the BGPSessionDown Event says so.
func (t *sessionTracker) bfd(name string, down bool, diag string) {
	s := t.peers[name]
	if s == nil {
		return
	}
	s.bfdDown = ""
	if down {
		s.bfdDown = diag
	}
}

// event takes one of the speaker's session events.
func (t *sessionTracker) event(ev bgp.Event) []news {
	s := t.peers[ev.Peer]
	if s == nil {
		return nil
	}
	switch {
	case ev.Up && !s.up:
		s.up, s.told = true, false
		return []news{{Object: ev.Peer, Type: corev1.EventTypeNormal, Reason: ReasonSessionEstablished,
			Message: fmt.Sprintf("node %q: BGP session with %s established", t.node, s.info.peer())}}
	case !ev.Up && s.up:
		s.up, s.told, s.downSince = false, false, ev.Time
		reason := ev.Reason
		if reason == "" {
			reason = "no reason given"
		}
		if s.bfdDown != "" {
			reason = fmt.Sprintf("BFD declared the peer down (%s), so the session was closed at once; GoBGP says: %s", s.bfdDown, reason)
		}
		return []news{{Object: ev.Peer, Type: corev1.EventTypeWarning, Reason: ReasonSessionDown,
			Message: fmt.Sprintf("node %q: BGP session with %s went down (%s): %s", t.node, s.info.peer(), ev.State, reason)}}
	}
	return nil
}

// check looks at the sessions' states (by peer name) and tells those that
// stayed unestablished for too long, once per wait, saying why as well as
// can be known.
func (t *sessionTracker) check(now time.Time, states map[string]bgp.PeerStatus) []news {
	var out []news
	names := make([]string, 0, len(t.peers))
	for name := range t.peers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		s := t.peers[name]
		st, ok := states[name]
		if st.Up {
			continue
		}
		if s.up { // the speaker's down event is on its way
			continue
		}
		if s.told || now.Sub(s.downSince) < t.after {
			continue
		}
		s.told = true
		out = append(out, news{Object: name, Type: corev1.EventTypeWarning, Reason: ReasonSessionNotEstablished,
			Message: t.notEstablishedMessage(s, st, ok, now.Sub(s.downSince))})
	}
	return out
}

func (t *sessionTracker) notEstablishedMessage(s *trackedSession, st bgp.PeerStatus, known bool, waited time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node %q: BGP session with %s not established after %v", t.node, s.info.peer(), waited.Round(time.Second))
	if known && st.State != "" {
		fmt.Fprintf(&b, " (state %s)", st.State)
	}
	reason := st.Reason
	if reason == "" {
		reason = "no connection attempt has failed with an error yet"
	}
	fmt.Fprintf(&b, ": %s", reason)
	switch {
	case s.info.Password:
		where := "spec.password"
		if s.info.PasswordSecret != "" {
			where = fmt.Sprintf("the %q key of Secret %s/%s", SecretPasswordKey, s.info.Namespace, s.info.PasswordSecret)
		}
		fmt.Fprintf(&b, ". A TCP MD5 password is configured (%s): a password that does not match the router's looks exactly like this, "+
			"since the router's kernel silently drops segments with a wrong signature and connections time out; check it against the router's", where)
	case strings.Contains(reason, "connection refused"):
		b.WriteString(". The router refuses TCP connections on the BGP port: is BGP running there, on that port, and does it accept this node's address as a neighbour?")
	case strings.Contains(reason, "i/o timeout"):
		b.WriteString(". Connections time out: the router is unreachable, filters port 179, or expects a TCP MD5 password")
	}
	return b.String()
}

// problemTracker tells each problem of an object once: when it appears or
// its message changes. A problem that went away is forgotten, so that it
// is told again should it come back.
type problemTracker struct {
	reason string
	told   map[string]string
}

func (t *problemTracker) update(problems map[string]string) []news {
	if t.told == nil {
		t.told = map[string]string{}
	}
	var out []news
	names := make([]string, 0, len(problems))
	for name := range problems {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if t.told[name] == problems[name] {
			continue
		}
		t.told[name] = problems[name]
		out = append(out, news{Object: name, Type: corev1.EventTypeWarning, Reason: t.reason, Message: problems[name]})
	}
	for name := range t.told {
		if _, ok := problems[name]; !ok {
			delete(t.told, name)
		}
	}
	return out
}
