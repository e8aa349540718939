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
	apipb "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/barelb/barelb/internal/config"
)

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
	Port    uint16 // 0 means 179
	// SourceAddress is the local address of the session; invalid lets the
	// kernel choose.
	SourceAddress netip.Addr
	// ASN is the peer's ASN; 0 accepts whatever it presents.
	ASN uint32
	// LocalASN and RouterID override the Speaker's when set.
	LocalASN uint32
	RouterID netip.Addr
	// HoldTime and KeepaliveTime are sent to the peer; 0 means GoBGP's
	// defaults (90 s and 30 s). ConnectRetry is the time between
	// connection attempts; 0 means 5 s (GoBGP's own default is 120 s).
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
	// without a next hop is refused, not sent with a broken one.
	NextHopV4, NextHopV6 netip.Addr
}

// Route is a prefix sent to a peer.
type Route struct {
	Prefix netip.Prefix
	// LocalPref is sent to iBGP peers when not 0 (GoBGP sends 100
	// otherwise); eBGP peers never see it.
	LocalPref   uint32
	Communities []config.Community
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

	mu       sync.Mutex
	started  bool
	sessions map[string]*session
	idle     []*session         // stopped servers, kept for reuse
	routes   map[string][]Route // desired routes by peer name
}

// New returns a Speaker; Start starts it.
func New(opts Options) *Speaker {
	return &Speaker{opts: opts, sessions: map[string]*session{}, routes: map[string][]Route{}}
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
	for name, sess := range s.sessions {
		if err := sess.stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping the session with %s: %w", name, err))
		}
		s.idle = append(s.idle, sess)
		delete(s.sessions, name)
	}
	s.started = false
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
	for name, sess := range s.sessions {
		if _, ok := want[name]; ok {
			continue
		}
		if err := sess.stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("removing peer %s: %w", name, err))
		}
		s.idle = append(s.idle, sess)
		delete(s.sessions, name)
	}
	names := make([]string, 0, len(want))
	for name := range want {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := want[name]
		sess := s.sessions[name]
		if sess != nil && reflect.DeepEqual(sess.peer, p) {
			continue
		}
		if sess != nil {
			if err := sess.stop(ctx); err != nil {
				errs = append(errs, fmt.Errorf("resetting peer %s: %w", name, err))
			}
		} else {
			sess = s.takeSession()
		}
		if err := sess.start(ctx, p, s.opts); err != nil {
			errs = append(errs, fmt.Errorf("peer %s: %w", name, err))
			s.idle = append(s.idle, sess)
			delete(s.sessions, name)
			continue
		}
		s.sessions[name] = sess
		if err := sess.setRoutes(ctx, s.routes[name]); err != nil {
			errs = append(errs, fmt.Errorf("routes to peer %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// Check tells whether SetPeers can open a session with p; SetPeers
// refuses such a peer, and callers may check first to tell which peer is
// wrong.
func (p Peer) Check() error {
	switch {
	case p.Name == "":
		return errors.New("no name")
	case !p.Address.IsValid():
		return errors.New("no address")
	case p.SourceAddress.IsValid() && p.SourceAddress.Is4() != p.Address.Is4():
		return fmt.Errorf("source address %s and peer address %s are of different families", p.SourceAddress, p.Address)
	case p.RouterID.IsValid() && !p.RouterID.Is4():
		return fmt.Errorf("router ID %s must be IPv4", p.RouterID)
	}
	return nil
}

func (s *Speaker) takeSession() *session {
	if n := len(s.idle); n > 0 {
		sess := s.idle[n-1]
		s.idle = s.idle[:n-1]
		return sess
	}
	return newSession(s.opts)
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
	sess := s.sessions[name]
	if sess == nil {
		return nil
	}
	if err := sess.srv.ResetPeer(ctx, &apipb.ResetPeerRequest{Address: sess.peer.Address.String(), Communication: reason}); err != nil {
		return fmt.Errorf("resetting the session with %s: %w", name, err)
	}
	return nil
}

// SetRoutes makes the routes sent to each peer those of desired (by peer
// name); a peer absent from desired is sent nothing. Routes for a peer not
// (yet) set are kept and sent once it is. Errors are per peer or route;
// the others are still set.
func (s *Speaker) SetRoutes(ctx context.Context, desired map[string][]Route) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.routes = make(map[string][]Route, len(desired))
	for name, rs := range desired {
		s.routes[name] = append([]Route(nil), rs...)
	}
	var errs []error
	for name, sess := range s.sessions {
		if err := sess.setRoutes(ctx, s.routes[name]); err != nil {
			errs = append(errs, fmt.Errorf("routes to peer %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// Peers reports the state of every session, sorted by peer name.
func (s *Speaker) Peers() []PeerStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]PeerStatus, 0, len(s.sessions))
	for name, sess := range s.sessions {
		st := sess.status()
		st.Peer = name
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	return out
}

// session is one GoBGP server and the peer it talks to.
type session struct {
	srv *server.BgpServer
	log *gobgpLogger

	// Owned by the Speaker's lock.
	peer   Peer
	routes map[netip.Prefix]installed

	// mu guards what the watch goroutine writes.
	mu         sync.Mutex
	name       string
	onEvent    func(Event)
	state      string
	lastChange time.Time
}

type installed struct {
	route Route
	path  *apipb.Path
}

func newSession(opts Options) *session {
	lg := newGoBGPLogger(opts.Logger)
	srv := server.NewBgpServer(server.LoggerOption(lg))
	go srv.Serve()
	sess := &session{srv: srv, log: lg}
	return sess
}

// start starts the server's BGP instance for p and adds p.
func (sess *session) start(ctx context.Context, p Peer, opts Options) error {
	routerID, asn := opts.RouterID, opts.ASN
	if p.RouterID.IsValid() {
		routerID = p.RouterID
	}
	if p.LocalASN != 0 {
		asn = p.LocalASN
	}
	sess.mu.Lock()
	sess.name, sess.onEvent, sess.state, sess.lastChange = p.Name, opts.OnEvent, "idle", time.Now()
	sess.mu.Unlock()
	sess.log.reset(opts.Logger.WithValues("peer", p.Name))
	if err := sess.srv.StartBgp(ctx, &apipb.StartBgpRequest{Global: &apipb.Global{
		Asn: asn, RouterId: routerID.String(), ListenPort: -1,
	}}); err != nil {
		return fmt.Errorf("starting BGP (router ID %s, ASN %d): %w", routerID, asn, err)
	}
	if err := dropReceivedRoutes(ctx, sess.srv); err != nil {
		_ = sess.srv.StopBgp(ctx, &apipb.StopBgpRequest{})
		return err
	}
	// The watch is registered after StartBgp: a stopped server forgets
	// its watchers' filters along with its global state.
	wctx, cancel := context.WithCancel(context.Background())
	if err := sess.srv.WatchEvent(wctx, &apipb.WatchEventRequest{Peer: &apipb.WatchEventRequest_Peer{}}, sess.onWatch); err != nil {
		cancel()
		_ = sess.srv.StopBgp(ctx, &apipb.StopBgpRequest{})
		return fmt.Errorf("watching peer events: %w", err)
	}
	if err := sess.srv.AddPeer(ctx, &apipb.AddPeerRequest{Peer: apiPeer(p)}); err != nil {
		cancel()
		_ = sess.srv.StopBgp(ctx, &apipb.StopBgpRequest{})
		return fmt.Errorf("adding the peer %s: %w", p.Address, err)
	}
	sess.peer = p
	sess.routes = map[netip.Prefix]installed{}
	sess.log.setCancel(cancel)
	return nil
}

// importPolicy is the name of the policy dropping routes from the peer.
const importPolicy = "barelb-drop-received"

// dropReceivedRoutes keeps what the router sends out of the server's RIB:
// the speaker only advertises, and a router may send a full table. GoBGP's
// global import policy also judges locally added paths, so the policy
// rejects routes learnt over iBGP and eBGP and accepts the rest (local).
func dropReceivedRoutes(ctx context.Context, srv *server.BgpServer) error {
	reject := func(name string, t apipb.Conditions_RouteType) *apipb.Statement {
		return &apipb.Statement{Name: name, Conditions: &apipb.Conditions{RouteType: t},
			Actions: &apipb.Actions{RouteAction: apipb.RouteAction_REJECT}}
	}
	policy := &apipb.Policy{Name: importPolicy, Statements: []*apipb.Statement{
		reject(importPolicy+"-ibgp", apipb.Conditions_ROUTE_TYPE_INTERNAL),
		reject(importPolicy+"-ebgp", apipb.Conditions_ROUTE_TYPE_EXTERNAL),
	}}
	if err := srv.AddPolicy(ctx, &apipb.AddPolicyRequest{Policy: policy}); err != nil {
		return fmt.Errorf("adding the import policy: %w", err)
	}
	if err := srv.AddPolicyAssignment(ctx, &apipb.AddPolicyAssignmentRequest{Assignment: &apipb.PolicyAssignment{
		Name: "global", Direction: apipb.PolicyDirection_IMPORT,
		Policies: []*apipb.Policy{{Name: importPolicy}}, DefaultAction: apipb.RouteAction_ACCEPT,
	}}); err != nil {
		return fmt.Errorf("assigning the import policy: %w", err)
	}
	return nil
}

// stop closes the session (a Cease notification) and forgets its routes.
func (sess *session) stop(ctx context.Context) error {
	sess.log.cancelWatch()
	err := sess.srv.StopBgp(ctx, &apipb.StopBgpRequest{})
	sess.routes = nil
	sess.mu.Lock()
	sess.onEvent = nil
	sess.mu.Unlock()
	return err
}

func (sess *session) onWatch(r *apipb.WatchEventResponse) {
	pe := r.GetPeer()
	if pe == nil || pe.GetType() != apipb.WatchEventResponse_PeerEvent_STATE {
		return
	}
	state := sessionState(pe.GetPeer().GetState().GetSessionState())
	addr, _ := netip.ParseAddr(pe.GetPeer().GetState().GetNeighborAddress())
	sess.mu.Lock()
	if state == sess.state {
		sess.mu.Unlock()
		return
	}
	ev := Event{Peer: sess.name, Address: addr.Unmap(), State: state, Up: state == "established", WasUp: sess.state == "established", Time: time.Now()}
	if !ev.Up {
		ev.Reason = sess.log.lastReason()
	}
	sess.state, sess.lastChange = state, ev.Time
	onEvent := sess.onEvent
	sess.mu.Unlock()
	if onEvent != nil {
		onEvent(ev)
	}
}

func (sess *session) status() PeerStatus {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	st := PeerStatus{State: sess.state, Up: sess.state == "established", LastChange: sess.lastChange}
	if !st.Up {
		st.Reason = sess.log.lastReason()
	}
	return st
}

func sessionState(s apipb.PeerState_SessionState) string {
	switch s {
	case apipb.PeerState_IDLE:
		return "idle"
	case apipb.PeerState_CONNECT:
		return "connect"
	case apipb.PeerState_ACTIVE:
		return "active"
	case apipb.PeerState_OPENSENT:
		return "opensent"
	case apipb.PeerState_OPENCONFIRM:
		return "openconfirm"
	case apipb.PeerState_ESTABLISHED:
		return "established"
	}
	return "unknown"
}

// setRoutes diffs desired against the installed paths: new or changed
// routes are added (a path for a prefix replaces the previous one), gone
// ones withdrawn.
func (sess *session) setRoutes(ctx context.Context, desired []Route) error {
	var errs []error
	want := map[netip.Prefix]Route{}
	for _, r := range desired {
		r.Prefix = r.Prefix.Masked()
		if _, dup := want[r.Prefix]; dup {
			errs = append(errs, fmt.Errorf("prefix %s is listed twice", r.Prefix))
			continue
		}
		want[r.Prefix] = r
	}
	for prefix, inst := range sess.routes {
		if _, ok := want[prefix]; ok {
			continue
		}
		if err := sess.srv.DeletePath(ctx, &apipb.DeletePathRequest{TableType: apipb.TableType_GLOBAL, Family: inst.path.Family, Path: inst.path}); err != nil {
			errs = append(errs, fmt.Errorf("withdrawing %s: %w", prefix, err))
			continue
		}
		delete(sess.routes, prefix)
	}
	for prefix, r := range want {
		if inst, ok := sess.routes[prefix]; ok && reflect.DeepEqual(inst.route, r) {
			continue
		}
		path, err := apiPath(sess.peer, r)
		if err != nil {
			errs = append(errs, err)
			if inst, ok := sess.routes[prefix]; ok {
				_ = sess.srv.DeletePath(ctx, &apipb.DeletePathRequest{TableType: apipb.TableType_GLOBAL, Family: inst.path.Family, Path: inst.path})
				delete(sess.routes, prefix)
			}
			continue
		}
		if _, err := sess.srv.AddPath(ctx, &apipb.AddPathRequest{TableType: apipb.TableType_GLOBAL, Path: path}); err != nil {
			errs = append(errs, fmt.Errorf("advertising %s: %w", prefix, err))
			continue
		}
		sess.routes[prefix] = installed{route: r, path: path}
	}
	return errors.Join(errs...)
}

var (
	familyV4 = &apipb.Family{Afi: apipb.Family_AFI_IP, Safi: apipb.Family_SAFI_UNICAST}
	familyV6 = &apipb.Family{Afi: apipb.Family_AFI_IP6, Safi: apipb.Family_SAFI_UNICAST}
)

// apiPeer is p as GoBGP's API wants it.
func apiPeer(p Peer) *apipb.Peer {
	secs := func(d time.Duration) uint64 { return uint64(d / time.Second) }
	connect := p.ConnectRetry
	if connect <= 0 {
		connect = config.DefaultConnectTime
	}
	port := uint32(p.Port)
	if port == 0 {
		port = 179
	}
	out := &apipb.Peer{
		Conf: &apipb.PeerConf{
			NeighborAddress: p.Address.String(),
			PeerAsn:         p.ASN,
			LocalAsn:        p.LocalASN,
			AuthPassword:    p.Password,
			Description:     p.Name,
		},
		Timers: &apipb.Timers{Config: &apipb.TimersConfig{
			ConnectRetry:      secs(connect),
			HoldTime:          secs(p.HoldTime),
			KeepaliveInterval: secs(p.KeepaliveTime),
			// After ResetPeer, reconnect as soon as after a failed
			// attempt (GoBGP's own default waits 30 s).
			IdleHoldTimeAfterReset: secs(connect),
		}},
		Transport: &apipb.Transport{RemotePort: port, PassiveMode: false},
	}
	if p.SourceAddress.IsValid() {
		out.Transport.LocalAddress = p.SourceAddress.String()
	}
	if p.EBGPMultiHopTTL > 0 {
		out.EbgpMultihop = &apipb.EbgpMultihop{Enabled: true, MultihopTtl: uint32(p.EBGPMultiHopTTL)}
	}
	families := []*apipb.Family{familyV4, familyV6}
	if p.DisableMP {
		families = []*apipb.Family{familyV6}
		if p.Address.Is4() {
			families = []*apipb.Family{familyV4}
		}
	}
	if p.GracefulRestart {
		out.GracefulRestart = &apipb.GracefulRestart{Enabled: true, RestartTime: 120}
	}
	for _, f := range families {
		afi := &apipb.AfiSafi{Config: &apipb.AfiSafiConfig{Family: f, Enabled: true}}
		if p.GracefulRestart {
			afi.MpGracefulRestart = &apipb.MpGracefulRestart{Config: &apipb.MpGracefulRestartConfig{Enabled: true}}
		}
		out.AfiSafis = append(out.AfiSafis, afi)
	}
	return out
}

// apiPath is r as a GoBGP path for a session with p.
func apiPath(p Peer, r Route) (*apipb.Path, error) {
	prefix := r.Prefix
	sameFamily := prefix.Addr().Is4() == p.Address.Is4()
	if !sameFamily && p.DisableMP {
		return nil, fmt.Errorf("prefix %s: the session with %s carries one family only (disableMP)", prefix, p.Address)
	}
	nexthop := "0.0.0.0"
	if prefix.Addr().Is6() {
		nexthop = "::"
	}
	if !sameFamily {
		nh := p.NextHopV4
		if prefix.Addr().Is6() {
			nh = p.NextHopV6
		}
		if !nh.IsValid() || nh.Is4() != prefix.Addr().Is4() {
			return nil, fmt.Errorf("prefix %s over the session with %s needs a next hop of its family, and none is set", prefix, p.Address)
		}
		nexthop = nh.String()
	}
	nlri, err := anypb.New(&apipb.IPAddressPrefix{PrefixLen: uint32(prefix.Bits()), Prefix: prefix.Addr().String()})
	if err != nil {
		return nil, fmt.Errorf("prefix %s: %w", prefix, err)
	}
	msgs := []proto.Message{&apipb.OriginAttribute{Origin: 0}}
	family := familyV4
	if prefix.Addr().Is4() {
		msgs = append(msgs, &apipb.NextHopAttribute{NextHop: nexthop})
	} else {
		family = familyV6
		msgs = append(msgs, &apipb.MpReachNLRIAttribute{Family: familyV6, NextHops: []string{nexthop}, Nlris: []*anypb.Any{nlri}})
	}
	if r.LocalPref != 0 {
		msgs = append(msgs, &apipb.LocalPrefAttribute{LocalPref: r.LocalPref})
	}
	var standard []uint32
	var large []*apipb.LargeCommunity
	for _, c := range r.Communities {
		if asn, value, ok := c.Standard(); ok {
			standard = append(standard, uint32(asn)<<16|uint32(value))
		} else if g, l1, l2, ok := c.Large(); ok {
			large = append(large, &apipb.LargeCommunity{GlobalAdmin: g, LocalData1: l1, LocalData2: l2})
		}
	}
	if len(standard) > 0 {
		msgs = append(msgs, &apipb.CommunitiesAttribute{Communities: standard})
	}
	if len(large) > 0 {
		msgs = append(msgs, &apipb.LargeCommunitiesAttribute{Communities: large})
	}
	attrs := make([]*anypb.Any, 0, len(msgs))
	for _, m := range msgs {
		a, err := anypb.New(m)
		if err != nil {
			return nil, fmt.Errorf("prefix %s: %w", prefix, err)
		}
		attrs = append(attrs, a)
	}
	return &apipb.Path{Family: family, Nlri: nlri, Pattrs: attrs}, nil
}
