package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"sort"
	"sync"
	"time"

	"github.com/go-logr/logr"
	apipb "github.com/osrg/gobgp/v4/api"
)

// DefaultConnectRetry is the time between connection attempts of a peer
// that sets none. It is short on purpose: GoBGP's own default (120 s)
// leaves a session down for minutes after one failed attempt.
const DefaultConnectRetry = 5 * time.Second

// Options configure a Speaker.
type Options struct {
	// RouterID and ASN are used for peers that set none of their own.
	RouterID netip.Addr
	ASN      uint32
	Logger   logr.Logger
	// OnEvent, when set, is called on every change of a session's state,
	// from the Speaker's goroutines; it must not block.
	OnEvent func(Event)
}

// Peer is a session the Speaker opens.
type Peer struct {
	// Name identifies the peer (the BGPPeer's name); routes are set by it.
	Name    string
	Address netip.Addr
	// Interface peers unnumbered over this interface: Address is then the
	// router's IPv6 link-local address on it, as the caller learnt it
	// (from the router's Router Advertisements), without a zone. GoBGP's
	// own neighbor interface is not used: it looks the router's address
	// up in the kernel's neighbour table (v4.8.0's
	// oc.GetIPv6LinkLocalNeighborAddress, as in v3), which a forwarding
	// host does not fill from advertisements. Routes of both families take NextHopV6, this
	// node's link-local address on the interface, as next hop: IPv4 ones
	// as an IPv6 next hop (RFC 8950), which GoBGP's extended next hop
	// capability announces.
	Interface string
	Port      uint16 // 0 means 179
	// SourceAddress is the local address of the session; invalid lets the
	// kernel choose.
	SourceAddress netip.Addr
	// ASN is the peer's ASN; 0 accepts whatever it presents.
	ASN uint32
	// LocalASN and RouterID override the Speaker's when set. A peer with
	// a router ID of its own runs on a GoBGP server of its own (a server
	// has one router ID).
	LocalASN uint32
	RouterID netip.Addr
	// HoldTime and KeepaliveTime are sent to the peer; 0 means GoBGP's
	// defaults (90 s and 30 s). ConnectRetry is the time between
	// connection attempts; 0 means DefaultConnectRetry.
	HoldTime, KeepaliveTime, ConnectRetry time.Duration
	// EBGPMultiHopTTL > 0 lets an eBGP peer be that many hops away.
	EBGPMultiHopTTL uint8
	// Password is the TCP MD5 password; empty means none.
	Password        string
	GracefulRestart bool
	// DisableMP keeps the session to its own address family; otherwise it
	// carries IPv4 and IPv6 unicast.
	DisableMP bool
	// NextHopV4 and NextHopV6 are the next hops of routes of the other
	// family than the session's (an IPv6 route over an IPv4 session needs
	// an IPv6 next hop, NextHopV6). Routes of the session's own family
	// take the session's local address. A route of the other family
	// without a next hop is refused, not sent with a broken one. An
	// unnumbered session sends NextHopV6 (link-local) for every route.
	NextHopV4, NextHopV6 netip.Addr
}

// Community is a BGP community: standard (RFC 1997: Global is the 16-bit
// ASN, Local1 the 16-bit value) unless Large (RFC 8092: all three parts).
type Community struct {
	Large                  bool
	Global, Local1, Local2 uint32
}

// Route is a prefix sent to a peer.
type Route struct {
	Prefix netip.Prefix
	// LocalPref is sent to iBGP peers when not 0 (GoBGP sends 100
	// otherwise); eBGP peers never see it.
	LocalPref   uint32
	Communities []Community
}

// Event is a change of a session's state.
type Event struct {
	Peer    string
	Address netip.Addr
	// State is the BGP FSM state: idle, connect, active, opensent,
	// openconfirm or established.
	State string
	// Up is State == "established"; WasUp tells whether it was before.
	Up, WasUp bool
	// Reason says why a session went down or why it is not coming up:
	// GoBGP's reason for the last reset ("notification-received: hold
	// timer expired", "read failed") or the error of the last connection
	// attempt ("dial tcp …: i/o timeout": a TCP MD5 mismatch looks like
	// this, as the peer's kernel drops the segments).
	Reason string
	Time   time.Time
}

// PeerStatus is the current state of a session.
type PeerStatus struct {
	Peer  string
	State string
	Up    bool
	// Reason is as in Event; LastChange is when State last changed.
	Reason     string
	LastChange time.Time
}

// Speaker holds the sessions.
type Speaker struct {
	opts Options

	mu        sync.Mutex
	started   bool
	instances []*instance        // running GoBGP servers, in creation order
	peers     map[string]*member // by peer name
	routes    map[string][]Route // desired routes by peer name
	nextID    uint32             // the next member's tag ID; never reused
	// gshut is RFC 8326's graceful shutdown: every route goes out with
	// the GRACEFUL_SHUTDOWN community and LOCAL_PREF 0.
	gshut bool
}

// member is a peer on one of the servers.
type member struct {
	peer Peer
	inst *instance
	// id tags the paths meant for this peer (see instance); groups are
	// the export statements made for it, by what they set.
	id     uint32
	groups map[group]uint32
}

// New returns a Speaker; Start starts it.
func New(opts Options) *Speaker {
	return &Speaker{opts: opts, peers: map[string]*member{}, routes: map[string][]Route{}, nextID: 1}
}

// Start checks the options; sessions open as SetPeers adds them.
func (s *Speaker) Start(ctx context.Context) error {
	if !s.opts.RouterID.Is4() {
		return fmt.Errorf("router ID %v must be an IPv4 address", s.opts.RouterID)
	}
	if s.opts.ASN == 0 {
		return errors.New("local ASN must not be 0")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.started = true
	return ctx.Err()
}

// Stop closes every session, which withdraws every route.
func (s *Speaker) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, inst := range s.instances {
		if err := inst.stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping the BGP server with router ID %s: %w", inst.routerID, err))
		}
	}
	s.instances = nil
	s.peers = map[string]*member{}
	s.started, s.gshut = false, false
	return errors.Join(errs...)
}

// SetPeers makes the running sessions those of desired: new peers are
// added, removed ones closed (their routes withdrawn), and a peer whose
// settings changed has its session reset with the new ones (GoBGP applies
// most settings only to a new session anyway). Unchanged peers are left
// alone. Errors are per peer; the others are still set.
func (s *Speaker) SetPeers(ctx context.Context, desired []Peer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return errors.New("the speaker is not started")
	}
	want := map[string]Peer{}
	var errs []error
	for _, p := range desired {
		if _, dup := want[p.Name]; dup {
			errs = append(errs, fmt.Errorf("peer %s is listed twice", p.Name))
			continue
		}
		if err := p.Check(); err != nil {
			errs = append(errs, fmt.Errorf("peer %s: %w", p.Name, err))
			continue
		}
		want[p.Name] = p
	}
	// Removed and changed peers go first: a changed peer comes back as a
	// new member (a new tag ID), so no path tagged for the old session
	// is ever sent to the new one.
	var gone []*member
	for name, m := range s.peers {
		if p, ok := want[name]; ok && reflect.DeepEqual(m.peer, p) {
			continue
		}
		if err := m.inst.deletePeer(ctx, m); err != nil {
			errs = append(errs, fmt.Errorf("removing peer %s: %w", name, err))
		}
		delete(s.peers, name)
		gone = append(gone, m)
	}
	names := make([]string, 0, len(want))
	for name := range want {
		if s.peers[name] == nil {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		if err := s.addPeer(ctx, want[name]); err != nil {
			errs = append(errs, fmt.Errorf("peer %s: %w", name, err))
		}
	}
	// Paths change only with the peers: unchanged peers keep theirs (a
	// diff of every route for nothing, on every plan, otherwise).
	if len(gone) > 0 || len(names) > 0 {
		if err := s.apply(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	// Only now that no path carries their tags.
	for _, m := range gone {
		if err := m.inst.deleteStatements(ctx, m); err != nil {
			errs = append(errs, fmt.Errorf("removing the export policy of peer %s: %w", m.peer.Name, err))
		}
	}
	s.dropEmptyInstances(ctx)
	return errors.Join(errs...)
}

// addPeer is the one place a peer joins a GoBGP server: the first one
// with its router ID and no session to its address yet, or a new one.
func (s *Speaker) addPeer(ctx context.Context, p Peer) error {
	if p.Interface != "" && !p.Address.IsValid() {
		return fmt.Errorf("the router's link-local address on interface %s is not known yet (no Router Advertisement heard from it)", p.Interface)
	}
	routerID := s.opts.RouterID
	if p.RouterID.IsValid() {
		routerID = p.RouterID
	}
	var inst *instance
	for _, i := range s.instances {
		if i.routerID == routerID && !i.hasAddress(p.Address) {
			inst = i
			break
		}
	}
	if inst == nil {
		var err error
		if inst, err = s.startInstance(ctx, routerID); err != nil {
			return err
		}
	}
	m := &member{peer: p, inst: inst, id: s.nextID, groups: map[group]uint32{}}
	s.nextID++
	if err := inst.addPeer(ctx, m); err != nil {
		return err
	}
	s.peers[p.Name] = m
	return nil
}

// startInstance starts a GoBGP server.
func (s *Speaker) startInstance(ctx context.Context, routerID netip.Addr) (*instance, error) {
	inst := newInstance(s.opts)
	if err := inst.start(ctx, routerID, s.opts); err != nil {
		return nil, err
	}
	s.instances = append(s.instances, inst)
	return inst, nil
}

// dropEmptyInstances stops the servers left without peers.
func (s *Speaker) dropEmptyInstances(ctx context.Context) {
	kept := s.instances[:0]
	for _, inst := range s.instances {
		if len(inst.members) > 0 {
			kept = append(kept, inst)
			continue
		}
		if err := inst.stop(ctx); err != nil {
			s.opts.Logger.Error(err, "stopping an unused BGP server")
		}
	}
	s.instances = kept
}

// target names the peer in messages: its address or interface.
func (p Peer) target() string {
	if p.Interface != "" {
		return "the router on interface " + p.Interface
	}
	return p.Address.String()
}

// neighbor is GoBGP's name of the peer: its address, with the interface
// as zone for an unnumbered peer ("fe80::1%eth1").
func (p Peer) neighbor() string {
	if p.Interface != "" {
		return p.Address.WithZone(p.Interface).String()
	}
	return p.Address.String()
}

// Check tells whether SetPeers can open a session with p; SetPeers
// refuses such a peer, and callers may check first to tell which peer is
// wrong. An unnumbered peer whose router is not known yet (no Address)
// passes: SetPeers says it is not known yet, until it is.
func (p Peer) Check() error {
	switch {
	case p.Name == "":
		return errors.New("no name")
	case p.Interface == "" && !p.Address.IsValid():
		return errors.New("no address")
	case p.Interface != "" && p.Address.IsValid() && !(p.Address.Is6() && p.Address.IsLinkLocalUnicast()):
		return fmt.Errorf("address %s on interface %s is not an IPv6 link-local address", p.Address, p.Interface)
	case p.Address.Zone() != "":
		return fmt.Errorf("address %s has a zone: name the interface in Interface", p.Address)
	case p.Interface != "" && p.SourceAddress.IsValid():
		return errors.New("a source address for an unnumbered peer: the session starts from the interface's link-local address")
	case p.SourceAddress.IsValid() && p.SourceAddress.Is4() != p.Address.Is4():
		return fmt.Errorf("source address %s and peer address %s are of different families", p.SourceAddress, p.Address)
	case p.RouterID.IsValid() && !p.RouterID.Is4():
		return fmt.Errorf("router ID %s must be IPv4", p.RouterID)
	}
	return nil
}

// ResetPeer closes the session with the named peer at once (a Cease
// notification, administrative reset, then the TCP connection closed, so
// the peer drops every route of the session at once) and lets it
// reconnect after its connect time, as usual. BFD uses it: a peer BFD
// declares down loses its session now instead of at the hold time. The
// session is not held down until BFD is up again: a router that runs BFD
// only for established sessions (FRR's dynamic neighbours do) would never
// bring BFD back up, and the session would never return. Naming a peer
// not (yet) set is not an error.
func (s *Speaker) ResetPeer(ctx context.Context, name, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.peers[name]
	if m == nil {
		return nil
	}
	if err := m.inst.srv.ResetPeer(ctx, &apipb.ResetPeerRequest{Address: m.peer.neighbor(), Communication: reason}); err != nil {
		return fmt.Errorf("resetting the session with %s: %w", name, err)
	}
	return nil
}

// SetRoutes makes the routes sent to each peer those of desired (by peer
// name); a peer absent from desired is sent nothing. Routes for a peer not
// (yet) set are kept and sent once it is. Errors are per peer or route;
// the others are still set.
//
// The Speaker keeps desired's slices, not copies (at 10,000 routes to 4
// peers a copy is 2.5 MB that the caller usually keeps as well): the
// caller must not modify them afterwards.
func (s *Speaker) SetRoutes(ctx context.Context, desired map[string][]Route) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.routes = make(map[string][]Route, len(desired))
	for name, rs := range desired {
		s.routes[name] = rs
	}
	return s.apply(ctx)
}

// apply gives every server the paths of its peers' desired routes.
func (s *Speaker) apply(ctx context.Context) error {
	var errs []error
	most := 0
	names := make([]string, 0, len(s.peers))
	for name := range s.peers {
		names = append(names, name)
		most = max(most, len(s.routes[name]))
	}
	sort.Strings(names)
	want := make(map[*instance]map[netip.Prefix][]tag, len(s.instances))
	for _, inst := range s.instances {
		want[inst] = make(map[netip.Prefix][]tag, most)
	}
	for _, name := range names {
		m := s.peers[name]
		for _, r := range s.routes[name] {
			r.Prefix = r.Prefix.Masked()
			// The peers' tags are appended one peer after the other: a
			// prefix listed twice for this one ends with its tag.
			if ts := want[m.inst][r.Prefix]; len(ts) > 0 && ts[len(ts)-1].peer == m.id {
				errs = append(errs, fmt.Errorf("routes to peer %s: prefix %s is listed twice", name, r.Prefix))
				continue
			}
			g, err := groupOf(m.peer, r)
			if err != nil {
				errs = append(errs, fmt.Errorf("routes to peer %s: %w", name, err))
				continue
			}
			if s.gshut {
				g = g.shuttingDown()
			}
			id, err := m.inst.statement(ctx, m, g)
			if err != nil {
				errs = append(errs, fmt.Errorf("routes to peer %s: %w", name, err))
				continue
			}
			want[m.inst][r.Prefix] = append(want[m.inst][r.Prefix], tag{peer: m.id, group: id})
		}
	}
	for _, inst := range s.instances {
		if err := inst.setPaths(ctx, want[inst], s.gshut); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// GracefulShutdownCommunity is RFC 8326's well-known GRACEFUL_SHUTDOWN
// community, 65535:0.
var GracefulShutdownCommunity = Community{Global: 65535, Local1: 0}

// SetGracefulShutdown turns RFC 8326's graceful shutdown on or off. While
// it is on, every route goes to every peer with the GRACEFUL_SHUTDOWN
// community added and a LOCAL_PREF of 0 (which only iBGP peers see: eBGP
// peers are sent none), instead of its own local preference; a router
// that honours the community (RFC 8326 §4.2: an import policy setting
// LOCAL_PREF 0) or an iBGP one then prefers any other path to this
// node's, and moves its traffic before the sessions close. Routes set
// while it is on are sent the same way; off, they go out as set again.
// It returns the number of established sessions sent routes, which the
// caller waits for: with none, nothing needs to move.
func (s *Speaker) SetGracefulShutdown(ctx context.Context, on bool) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return 0, errors.New("the speaker is not started")
	}
	n := 0
	for name, m := range s.peers {
		if len(s.routes[name]) > 0 && m.inst.status(m.peer).Up {
			n++
		}
	}
	if s.gshut == on {
		return n, nil
	}
	s.gshut = on
	return n, s.apply(ctx)
}

// Peers reports the state of every session, sorted by peer name.
func (s *Speaker) Peers() []PeerStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]PeerStatus, 0, len(s.peers))
	for name, m := range s.peers {
		st := m.inst.status(m.peer)
		st.Peer = name
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	return out
}
