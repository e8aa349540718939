package bgp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	apipb "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/config/oc"
	bgppkt "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// instance is one GoBGP server and the peers on it. See the package
// documentation for how one RIB carries routes that differ per peer.
type instance struct {
	srv *server.BgpServer
	log *gobgpLogger

	// Owned by the Speaker's lock.
	routerID netip.Addr
	members  map[uint32]*member
	paths    map[netip.Prefix]installed
	cancel   context.CancelFunc

	// mu guards what the watch goroutine reads and writes.
	mu       sync.Mutex
	onEvent  func(Event)
	sessions map[netip.Addr]*sessionState
}

// sessionState is what the watch saw of one peer's session.
type sessionState struct {
	name       string
	state      string
	lastChange time.Time
}

// installed is what the path of a prefix in the RIB carries: its tags.
// The path itself is not kept (a third of the speaker's heap at 3,000
// routes): a withdrawal rebuilds it.
type installed struct {
	tags []tag
}

func newInstance(opts Options) *instance {
	return &instance{log: newGoBGPLogger(opts.Logger)}
}

// start starts a GoBGP server and its BGP instance: no listening socket
// (every session is opened actively), received routes dropped, nothing
// exported that the export policy does not accept, and a watch on the
// sessions. A server is started for each start: GoBGP v4's StopBgp ends
// its Serve loop, after which the server takes no more requests.
func (inst *instance) start(ctx context.Context, routerID netip.Addr, opts Options) error {
	inst.log.reset(opts.Logger.WithValues("routerID", routerID.String()))
	srv := server.NewBgpServer(server.LoggerOption(inst.log.slog(), nil))
	go srv.Serve()
	// Families limits the global RIB to the two families the sessions
	// carry: GoBGP v4 makes a table for every family it knows when none
	// is given, and each table preallocates 2,048 shards (about 10 MiB
	// of heap per server for tables never used).
	if err := srv.StartBgp(ctx, &apipb.StartBgpRequest{Global: &apipb.Global{
		Asn: opts.ASN, RouterId: routerID.String(), ListenPort: -1, Families: globalFamilies,
	}}); err != nil {
		srv.Stop()
		return fmt.Errorf("starting BGP (router ID %s, ASN %d): %w", routerID, opts.ASN, err)
	}
	if err := setUpPolicies(ctx, srv); err != nil {
		srv.Stop()
		return err
	}
	wctx, cancel := context.WithCancel(context.Background())
	if err := srv.WatchEvent(wctx, server.WatchEventMessageCallbacks{OnPeerUpdate: inst.onWatch}, server.WatchPeer()); err != nil {
		cancel()
		srv.Stop()
		return fmt.Errorf("watching peer events: %w", err)
	}
	inst.srv, inst.routerID, inst.cancel = srv, routerID, cancel
	inst.members = map[uint32]*member{}
	inst.paths = map[netip.Prefix]installed{}
	inst.mu.Lock()
	inst.onEvent, inst.sessions = opts.OnEvent, map[netip.Addr]*sessionState{}
	inst.mu.Unlock()
	return nil
}

// stop closes every session (a Cease notification each), ends the
// server and forgets its state. GoBGP's Stop logs what fails rather than
// returning it (through the logger, as an error); it is the one call
// that also ends the server's BFD goroutine, which StopBgp leaves running.
func (inst *instance) stop(ctx context.Context) error {
	if inst.cancel != nil {
		inst.cancel()
		inst.cancel = nil
	}
	if inst.srv != nil {
		inst.srv.Stop()
		inst.srv = nil
	}
	inst.members, inst.paths = nil, nil
	inst.mu.Lock()
	inst.onEvent, inst.sessions = nil, nil
	inst.mu.Unlock()
	return ctx.Err()
}

// hasAddress tells whether a session to a runs here. Unnumbered peers
// count by their link-local address alone: the neighbour sets that
// select a peer's routes match addresses without their zone, so two
// routers with one link-local address on two links need two servers.
func (inst *instance) hasAddress(a netip.Addr) bool {
	for _, m := range inst.members {
		if m.peer.Address == a {
			return true
		}
	}
	return false
}

// addPeer opens the session of m. Its neighbour set is defined first, so
// that the export statements made for it later can name it.
func (inst *instance) addPeer(ctx context.Context, m *member) error {
	if err := inst.srv.AddDefinedSet(ctx, &apipb.AddDefinedSetRequest{DefinedSet: &apipb.DefinedSet{
		DefinedType: apipb.DefinedType_DEFINED_TYPE_NEIGHBOR, Name: neighborSetName(m.id),
		List: []string{netip.PrefixFrom(m.peer.Address, m.peer.Address.BitLen()).String()},
	}}); err != nil {
		return fmt.Errorf("defining the neighbour set of %s: %w", m.peer.target(), err)
	}
	inst.mu.Lock()
	inst.sessions[m.peer.Address] = &sessionState{name: m.peer.Name, state: "idle", lastChange: time.Now()}
	inst.mu.Unlock()
	inst.log.forget(m.peer.neighbor())
	if err := inst.srv.AddPeer(ctx, &apipb.AddPeerRequest{Peer: apiPeer(m.peer)}); err != nil {
		inst.mu.Lock()
		delete(inst.sessions, m.peer.Address)
		inst.mu.Unlock()
		_ = inst.srv.DeleteDefinedSet(ctx, &apipb.DeleteDefinedSetRequest{DefinedSet: &apipb.DefinedSet{
			DefinedType: apipb.DefinedType_DEFINED_TYPE_NEIGHBOR, Name: neighborSetName(m.id)}, All: true})
		return fmt.Errorf("adding the peer %s: %w", m.peer.target(), err)
	}
	inst.members[m.id] = m
	return nil
}

// deletePeer closes the session of m (a Cease notification). Its export
// statements stay until no path carries its tags (deleteStatements).
func (inst *instance) deletePeer(ctx context.Context, m *member) error {
	delete(inst.members, m.id)
	inst.mu.Lock()
	delete(inst.sessions, m.peer.Address)
	inst.mu.Unlock()
	return inst.srv.DeletePeer(ctx, &apipb.DeletePeerRequest{Address: m.peer.neighbor()})
}

// deleteStatements removes the export policies and sets made for m.
func (inst *instance) deleteStatements(ctx context.Context, m *member) error {
	if inst.cancel == nil {
		return nil // stopped: the server forgot them
	}
	var errs []error
	for _, id := range m.groups {
		name := policyName(m.id, id)
		if err := inst.srv.DeletePolicyAssignment(ctx, &apipb.DeletePolicyAssignmentRequest{Assignment: &apipb.PolicyAssignment{
			Name: "global", Direction: apipb.PolicyDirection_POLICY_DIRECTION_EXPORT, Policies: []*apipb.Policy{{Name: name}},
		}}); err != nil {
			errs = append(errs, err)
		}
		if err := inst.srv.DeletePolicy(ctx, &apipb.DeletePolicyRequest{Policy: &apipb.Policy{Name: name}, All: true}); err != nil {
			errs = append(errs, err)
		}
		if err := inst.srv.DeleteDefinedSet(ctx, &apipb.DeleteDefinedSetRequest{DefinedSet: &apipb.DefinedSet{
			DefinedType: apipb.DefinedType_DEFINED_TYPE_LARGE_COMMUNITY, Name: tagSetName(m.id, id)}, All: true}); err != nil {
			errs = append(errs, err)
		}
	}
	if err := inst.srv.DeleteDefinedSet(ctx, &apipb.DeleteDefinedSetRequest{DefinedSet: &apipb.DefinedSet{
		DefinedType: apipb.DefinedType_DEFINED_TYPE_NEIGHBOR, Name: neighborSetName(m.id)}, All: true}); err != nil {
		errs = append(errs, err)
	}
	m.groups = map[group]uint32{}
	return errors.Join(errs...)
}

// statement returns the ID of m's export statement for g, making it when
// it is new: a policy with one statement, appended to the global export
// assignment.
func (inst *instance) statement(ctx context.Context, m *member, g group) (uint32, error) {
	if id, ok := m.groups[g]; ok {
		return id, nil
	}
	id := uint32(len(m.groups)) + 1
	if err := inst.srv.AddDefinedSet(ctx, &apipb.AddDefinedSetRequest{DefinedSet: &apipb.DefinedSet{
		DefinedType: apipb.DefinedType_DEFINED_TYPE_LARGE_COMMUNITY, Name: tagSetName(m.id, id),
		List: []string{"^" + tag{peer: m.id, group: id}.String() + "$"},
	}}); err != nil {
		return 0, fmt.Errorf("defining an export tag: %w", err)
	}
	p := exportPolicy(m.id, id, g)
	if err := inst.srv.AddPolicy(ctx, &apipb.AddPolicyRequest{Policy: p}); err != nil {
		return 0, fmt.Errorf("adding an export policy: %w", err)
	}
	if err := inst.srv.AddPolicyAssignment(ctx, &apipb.AddPolicyAssignmentRequest{Assignment: &apipb.PolicyAssignment{
		Name: "global", Direction: apipb.PolicyDirection_POLICY_DIRECTION_EXPORT, Policies: []*apipb.Policy{{Name: p.Name}},
		DefaultAction: apipb.RouteAction_ROUTE_ACTION_REJECT,
	}}); err != nil {
		return 0, fmt.Errorf("assigning an export policy: %w", err)
	}
	m.groups[g] = id
	return id, nil
}

// setPaths diffs desired (the tags of each prefix) against the installed
// paths: a prefix whose tags changed gets a new path (which replaces the
// previous one; GoBGP withdraws it from the peers the new one no longer
// goes to), gone ones are withdrawn. With gshut the new paths carry
// LOCAL_PREF 0 (graceful shutdown); their tags name statements of
// shutting-down groups, so they differ from the paths before.
func (inst *instance) setPaths(ctx context.Context, desired map[netip.Prefix][]tag, gshut bool) error {
	var errs []error
	for prefix, in := range inst.paths {
		if _, ok := desired[prefix]; ok {
			continue
		}
		path, err := apiPath(prefix, in.tags, false)
		if err == nil {
			err = inst.srv.DeletePath(apiutil.DeletePathRequest{Paths: []*apiutil.Path{path}})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("withdrawing %s: %w", prefix, err))
			continue
		}
		delete(inst.paths, prefix)
	}
	for prefix, tags := range desired {
		sortTags(tags)
		if in, ok := inst.paths[prefix]; ok && slices.Equal(in.tags, tags) {
			continue
		}
		path, err := apiPath(prefix, tags, gshut)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := inst.srv.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{path}}); err != nil {
			errs = append(errs, fmt.Errorf("advertising %s: %w", prefix, err))
			continue
		}
		inst.paths[prefix] = installed{tags: tags}
	}
	return errors.Join(errs...)
}

func (inst *instance) onWatch(pe *apiutil.WatchEventMessage_PeerEvent, _ time.Time) {
	if pe == nil || pe.Type != apiutil.PEER_EVENT_STATE {
		return
	}
	state := fsmState(pe.Peer.State.SessionState)
	neighbor := pe.Peer.State.NeighborAddress
	if !neighbor.IsValid() {
		return
	}
	// Sessions are known by their address without the zone an unnumbered
	// peer's name carries (hasAddress keeps them apart per server).
	addr := neighbor.Unmap().WithZone("")
	inst.mu.Lock()
	sess := inst.sessions[addr]
	if sess == nil || state == sess.state {
		inst.mu.Unlock()
		return
	}
	ev := Event{Peer: sess.name, Address: addr, State: state, Up: state == "established", WasUp: sess.state == "established", Time: time.Now()}
	if !ev.Up {
		ev.Reason = inst.log.lastReason(neighbor.String())
	}
	sess.state, sess.lastChange = state, ev.Time
	onEvent := inst.onEvent
	inst.mu.Unlock()
	if onEvent != nil {
		onEvent(ev)
	}
}

func (inst *instance) status(p Peer) PeerStatus {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	sess := inst.sessions[p.Address]
	if sess == nil {
		return PeerStatus{State: "idle"}
	}
	st := PeerStatus{State: sess.state, Up: sess.state == "established", LastChange: sess.lastChange}
	if !st.Up {
		st.Reason = inst.log.lastReason(p.neighbor())
	}
	return st
}

func fsmState(s bgppkt.FSMState) string {
	switch s {
	case bgppkt.BGP_FSM_IDLE:
		return "idle"
	case bgppkt.BGP_FSM_CONNECT:
		return "connect"
	case bgppkt.BGP_FSM_ACTIVE:
		return "active"
	case bgppkt.BGP_FSM_OPENSENT:
		return "opensent"
	case bgppkt.BGP_FSM_OPENCONFIRM:
		return "openconfirm"
	case bgppkt.BGP_FSM_ESTABLISHED:
		return "established"
	}
	return "unknown"
}

// importPolicy is the name of the policy dropping routes from the peers.
const importPolicy = "barelb-drop-received"

// setUpPolicies keeps what the routers send out of the server's RIB (the
// speaker only advertises, and a router may send a full table: GoBGP's
// global import policy also judges locally added paths, so the policy
// rejects routes learnt over iBGP and eBGP and accepts the rest, local)
// and makes the export policy reject what no statement accepts.
func setUpPolicies(ctx context.Context, srv *server.BgpServer) error {
	reject := func(name string, t apipb.Conditions_RouteType) *apipb.Statement {
		return &apipb.Statement{Name: name, Conditions: &apipb.Conditions{RouteType: t},
			Actions: &apipb.Actions{RouteAction: apipb.RouteAction_ROUTE_ACTION_REJECT}}
	}
	policy := &apipb.Policy{Name: importPolicy, Statements: []*apipb.Statement{
		reject(importPolicy+"-ibgp", apipb.Conditions_ROUTE_TYPE_INTERNAL),
		reject(importPolicy+"-ebgp", apipb.Conditions_ROUTE_TYPE_EXTERNAL),
	}}
	if err := srv.AddPolicy(ctx, &apipb.AddPolicyRequest{Policy: policy}); err != nil {
		return fmt.Errorf("adding the import policy: %w", err)
	}
	if err := srv.AddPolicyAssignment(ctx, &apipb.AddPolicyAssignmentRequest{Assignment: &apipb.PolicyAssignment{
		Name: "global", Direction: apipb.PolicyDirection_POLICY_DIRECTION_IMPORT,
		Policies: []*apipb.Policy{{Name: importPolicy}}, DefaultAction: apipb.RouteAction_ROUTE_ACTION_ACCEPT,
	}}); err != nil {
		return fmt.Errorf("assigning the import policy: %w", err)
	}
	if err := srv.AddPolicyAssignment(ctx, &apipb.AddPolicyAssignmentRequest{Assignment: &apipb.PolicyAssignment{
		Name: "global", Direction: apipb.PolicyDirection_POLICY_DIRECTION_EXPORT, DefaultAction: apipb.RouteAction_ROUTE_ACTION_REJECT,
	}}); err != nil {
		return fmt.Errorf("assigning the export policy: %w", err)
	}
	return nil
}

// tagGlobal is the global administrator of the large communities that tag
// a path for a peer: 4294967295, a reserved ASN no real community uses.
// The tags never leave the speaker: every export statement replaces them.
const tagGlobal = 4294967295

// tag marks a path for one peer (by member ID) with the attributes of
// one of its export statements (group).
type tag struct{ peer, group uint32 }

func (t tag) String() string {
	return strconv.FormatUint(tagGlobal, 10) + ":" + strconv.FormatUint(uint64(t.peer), 10) + ":" + strconv.FormatUint(uint64(t.group), 10)
}

// sortTags sorts in place without allocating (sort.Slice does, and it
// runs for every prefix on every change).
func sortTags(ts []tag) {
	slices.SortFunc(ts, func(a, b tag) int {
		if c := cmp.Compare(a.peer, b.peer); c != 0 {
			return c
		}
		return cmp.Compare(a.group, b.group)
	})
}

// group is what an export statement sets on the paths it accepts for a
// peer: local preference, communities (as GoBGP writes them) and, for
// routes of the other family than the session's or any route to an
// unnumbered peer, the next hop.
type group struct {
	localPref uint32
	standard  string // space-separated "ASN:value"
	large     string // space-separated "G:L1:L2"
	nextHop   netip.Addr
	// gshut marks the groups of graceful shutdown (shuttingDown), whose
	// paths carry LOCAL_PREF 0: never the statement of a group without.
	gshut bool
}

// gshutCommunity is GracefulShutdownCommunity as GoBGP writes it.
const gshutCommunity = "65535:0"

// shuttingDown is g during graceful shutdown (RFC 8326): the
// GRACEFUL_SHUTDOWN community added, and no local preference of its own,
// so that the path's LOCAL_PREF 0 goes to iBGP peers.
func (g group) shuttingDown() group {
	if !slices.Contains(strings.Fields(g.standard), gshutCommunity) {
		g.standard = strings.TrimSpace(g.standard + " " + gshutCommunity)
	}
	g.localPref, g.gshut = 0, true
	return g
}

// groupOf is what the statement for r to p sets; a route p cannot carry
// is an error.
func groupOf(p Peer, r Route) (group, error) {
	prefix := r.Prefix
	g := group{localPref: r.LocalPref}
	switch {
	case p.Interface != "":
		// An unnumbered session is IPv6 (link-local) and carries IPv4
		// routes with an IPv6 next hop (RFC 8950). GoBGP v3.37.0 sent
		// "::" (a router refuses it) on a session to a link-local
		// address, so the node's own link-local address is set, for
		// both families, whatever GoBGP would choose.
		if p.DisableMP && prefix.Addr().Is4() {
			return g, fmt.Errorf("prefix %s: the session with %s carries one family only (disableMP)", prefix, p.target())
		}
		if !p.NextHopV6.Is6() || !p.NextHopV6.IsLinkLocalUnicast() {
			return g, fmt.Errorf("prefix %s over the session with %s needs this node's link-local address on the interface as next hop, and none is set", prefix, p.target())
		}
		g.nextHop = p.NextHopV6.WithZone("")
	case prefix.Addr().Is4() != p.Address.Is4():
		if p.DisableMP {
			return g, fmt.Errorf("prefix %s: the session with %s carries one family only (disableMP)", prefix, p.Address)
		}
		nh := p.NextHopV4
		if prefix.Addr().Is6() {
			nh = p.NextHopV6
		}
		if !nh.IsValid() || nh.Is4() != prefix.Addr().Is4() {
			return g, fmt.Errorf("prefix %s over the session with %s needs a next hop of its family, and none is set", prefix, p.Address)
		}
		g.nextHop = nh
	}
	var standard, large []string
	for _, c := range r.Communities {
		if c.Large {
			large = append(large, fmt.Sprintf("%d:%d:%d", c.Global, c.Local1, c.Local2))
		} else {
			standard = append(standard, fmt.Sprintf("%d:%d", uint16(c.Global), uint16(c.Local1)))
		}
	}
	g.standard, g.large = strings.Join(standard, " "), strings.Join(large, " ")
	return g, nil
}

func neighborSetName(peer uint32) string {
	return "barelb-peer-" + strconv.FormatUint(uint64(peer), 10)
}
func tagSetName(peer, group uint32) string {
	return "barelb-tag-" + strconv.FormatUint(uint64(peer), 10) + "-" + strconv.FormatUint(uint64(group), 10)
}
func policyName(peer, group uint32) string {
	return "barelb-export-" + strconv.FormatUint(uint64(peer), 10) + "-" + strconv.FormatUint(uint64(group), 10)
}

// exportPolicy is the policy with the one statement for group g of peer:
// a path sent to that peer (its neighbour set) and tagged for it with g
// (its tag set) is accepted with g's attributes, and its tags replaced.
func exportPolicy(peer, id uint32, g group) *apipb.Policy {
	name := policyName(peer, id)
	actions := &apipb.Actions{RouteAction: apipb.RouteAction_ROUTE_ACTION_ACCEPT}
	// The tags are the path's only large communities: replacing them
	// with the route's own (or removing every tag when it has none)
	// leaves exactly the route's.
	if g.large != "" {
		actions.LargeCommunity = &apipb.CommunityAction{Type: apipb.CommunityAction_TYPE_REPLACE, Communities: strings.Fields(g.large)}
	} else {
		actions.LargeCommunity = &apipb.CommunityAction{Type: apipb.CommunityAction_TYPE_REMOVE,
			Communities: []string{"^" + strconv.FormatUint(tagGlobal, 10) + `:\d+:\d+$`}}
	}
	if g.standard != "" {
		actions.Community = &apipb.CommunityAction{Type: apipb.CommunityAction_TYPE_ADD, Communities: strings.Fields(g.standard)}
	}
	if g.localPref != 0 {
		actions.LocalPref = &apipb.LocalPrefAction{Value: g.localPref}
	}
	if g.nextHop.IsValid() {
		actions.Nexthop = &apipb.NexthopAction{Address: g.nextHop.String()}
	}
	return &apipb.Policy{Name: name, Statements: []*apipb.Statement{{
		Name: name,
		Conditions: &apipb.Conditions{
			NeighborSet:       &apipb.MatchSet{Type: apipb.MatchSet_TYPE_ANY, Name: neighborSetName(peer)},
			LargeCommunitySet: &apipb.MatchSet{Type: apipb.MatchSet_TYPE_ANY, Name: tagSetName(peer, id)},
		},
		Actions: actions,
	}}}
}

// globalFamilies are IPv4 and IPv6 unicast as StartBgp's Global.Families
// names them (GoBGP's index of the family in oc.AfiSafiTypeToIntMap).
var globalFamilies = []uint32{
	uint32(oc.AfiSafiTypeToIntMap[oc.AFI_SAFI_TYPE_IPV4_UNICAST]),
	uint32(oc.AfiSafiTypeToIntMap[oc.AFI_SAFI_TYPE_IPV6_UNICAST]),
}

var (
	apiFamilyV4 = &apipb.Family{Afi: apipb.Family_AFI_IP, Safi: apipb.Family_SAFI_UNICAST}
	apiFamilyV6 = &apipb.Family{Afi: apipb.Family_AFI_IP6, Safi: apipb.Family_SAFI_UNICAST}
)

// apiPeer is p as GoBGP's API wants it.
func apiPeer(p Peer) *apipb.Peer {
	secs := func(d time.Duration) uint64 { return uint64(d / time.Second) }
	connect := p.ConnectRetry
	if connect <= 0 {
		connect = DefaultConnectRetry
	}
	port := uint32(p.Port)
	if port == 0 {
		port = 179
	}
	out := &apipb.Peer{
		Conf: &apipb.PeerConf{
			NeighborAddress: p.neighbor(),
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
	families := []*apipb.Family{apiFamilyV4, apiFamilyV6}
	if p.DisableMP {
		families = []*apipb.Family{apiFamilyV6}
		if p.Address.Is4() {
			families = []*apipb.Family{apiFamilyV4}
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

// apiPath is the path of prefix in the RIB, tagged for the peers it goes
// to: the next hop is unspecified (each session sends its local address;
// an export statement sets the next hop of the other family's routes).
// With zeroPref it carries LOCAL_PREF 0, for graceful shutdown: an export
// statement cannot set 0 (GoBGP takes it for "no action"), and GoBGP
// sends a path's own local preference to iBGP peers only.
func apiPath(prefix netip.Prefix, tags []tag, zeroPref bool) (*apiutil.Path, error) {
	nlri, err := bgppkt.NewIPAddrPrefix(prefix)
	if err != nil {
		return nil, fmt.Errorf("prefix %s: %w", prefix, err)
	}
	attrs := []bgppkt.PathAttributeInterface{bgppkt.NewPathAttributeOrigin(0)}
	family := bgppkt.RF_IPv4_UC
	if prefix.Addr().Is4() {
		nh, err := bgppkt.NewPathAttributeNextHop(netip.IPv4Unspecified())
		if err != nil {
			return nil, fmt.Errorf("prefix %s: %w", prefix, err)
		}
		attrs = append(attrs, nh)
	} else {
		family = bgppkt.RF_IPv6_UC
		mp, err := bgppkt.NewPathAttributeMpReachNLRI(family, []bgppkt.PathNLRI{{NLRI: nlri}}, netip.IPv6Unspecified())
		if err != nil {
			return nil, fmt.Errorf("prefix %s: %w", prefix, err)
		}
		attrs = append(attrs, mp)
	}
	if zeroPref {
		attrs = append(attrs, bgppkt.NewPathAttributeLocalPref(0))
	}
	if len(tags) > 0 {
		large := make([]*bgppkt.LargeCommunity, 0, len(tags))
		for _, t := range tags {
			large = append(large, bgppkt.NewLargeCommunity(tagGlobal, t.peer, t.group))
		}
		attrs = append(attrs, bgppkt.NewPathAttributeLargeCommunities(large))
	}
	return &apiutil.Path{Family: family, Nlri: nlri, Attrs: attrs}, nil
}
