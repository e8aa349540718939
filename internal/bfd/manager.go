package bfd

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// RFC 5881 and RFC 5883 constants.
const (
	// ControlPort is the UDP destination port of single-hop control
	// packets (RFC 5881 §4).
	ControlPort = 3784
	// MultihopControlPort is the UDP destination port of multihop
	// control packets (RFC 5883 §5).
	MultihopControlPort = 4784
	// DefaultMultihopMinTTL is the least TTL a multihop session accepts
	// when its Profile sets none: one router between the two ends, as
	// FRR's bfdd (and so MetalLB) defaults to.
	DefaultMultihopMinTTL = 254
	// MinSourcePort and MaxSourcePort bound the source port (RFC 5881 §4).
	MinSourcePort = 49152
	MaxSourcePort = 65535
	// TTL is sent on every packet and required on every received one
	// (RFC 5881 §5; GTSM, RFC 5082).
	TTL = 255
	// tos is DSCP CS6 (network control), as FRR's bfdd sends.
	tos = 0xc0
	// inboxLen is how many received packets wait for a busy session.
	inboxLen = 16
	// maxDrain bounds how long a removed session keeps sending AdminDown.
	maxDrain = 3 * time.Second
)

// Key names a session: the local and remote address, optionally the
// interface both are bound to, and whether it is a multihop session.
// Addresses carry no zone; Interface gives a link-local address its
// scope. A single-hop and a multihop session between the same addresses
// are different sessions (RFC 5883 §3: they are told apart by port).
type Key struct {
	Local, Remote netip.Addr
	Interface     string
	Multihop      bool
}

func (k Key) String() string {
	s := k.Local.String() + "->" + k.Remote.String()
	if k.Interface != "" {
		s += "%" + k.Interface
	}
	if k.Multihop {
		s += " (multihop)"
	}
	return s
}

// normal is k without zones and with IPv4-mapped addresses unmapped.
func (k Key) normal() Key {
	k.Local, k.Remote = k.Local.WithZone("").Unmap(), k.Remote.WithZone("").Unmap()
	return k
}

// Peer is a session to set up.
type Peer struct {
	// Local is the address packets are sent from; Remote is the peer's.
	// Both are of one family; Remote is on a directly connected network
	// unless Multihop.
	Local, Remote netip.Addr
	// Interface binds the session's socket to an interface and makes the
	// session accept packets from that interface only. Needed for a
	// link-local Remote.
	Interface string
	// Multihop runs the session as RFC 5883 has it, for a peer that may
	// be routers away (an eBGP multihop peer): UDP port 4784, and a
	// received packet needs a TTL of at least the Profile's MinimumTTL
	// instead of exactly 255.
	Multihop bool
	Profile  Profile
}

// Key returns the peer's session key.
func (p Peer) Key() Key {
	return Key{Local: p.Local, Remote: p.Remote, Interface: p.Interface, Multihop: p.Multihop}.normal()
}

// Change is a state change of one session.
type Change struct {
	Peer Key
	Transition
}

// SessionInfo is the snapshot of one session returned by Sessions.
type SessionInfo struct {
	Peer    Key
	Profile Profile
	Info
	// Since is when the session entered its current state.
	Since time.Time
}

// ManagerStats counts what the shared listeners dropped before any session
// saw it.
type ManagerStats struct {
	// Malformed packets failed Unmarshal (including authenticated ones).
	Malformed uint64
	// BadTTL packets arrived with a TTL or hop limit other than 255
	// (single-hop) or below their session's minimum TTL (multihop).
	BadTTL uint64
	// NoSession packets matched no session.
	NoSession uint64
	// Overflow packets were dropped because a session's queue was full.
	Overflow uint64
}

// Options configure a Manager.
type Options struct {
	Log logr.Logger
	// OnChange is called for every state change, in order for each
	// session, from the session's goroutine: it must not block for long
	// (the session's timers wait). The BGP layer brings its session down
	// when Change.PeerFailed is true.
	OnChange func(Change)
	// OpenSocket, when set, wraps every socket the Manager opens and every
	// interface lookup (tests use it to open them inside a network
	// namespace). It must call open and return its error.
	OpenSocket func(open func() error) error
}

// Manager runs BFD sessions over UDP (RFC 5881, RFC 5883): one listener
// per address family on port 3784, shared by all single-hop sessions, one
// per family on port 4784 for multihop sessions (opened with the first
// multihop session of the family), and one sending socket per session.
// Its methods are safe for concurrent use.
type Manager struct {
	log    logr.Logger
	opts   Options
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex
	// listeners are the open listeners by port and family ("udp4",
	// "udp6"); closed when the Manager stops.
	listeners map[listenerKey]net.PacketConn
	byKey     map[Key]*session
	byDiscr   map[uint32]*session
	byRemote  map[netip.Addr][]*session
	ports     map[uint16]bool // source ports of live sessions
	// draining holds removed sessions that still send AdminDown.
	draining map[Key]*session
	stats    ManagerStats
}

type listenerKey struct {
	port    int
	network string
}

// received is a packet for a session.
type received struct {
	p  Packet
	at time.Time
}

type session struct {
	peer    Peer
	key     Key
	sm      *Session
	conn    *net.UDPConn
	dst     *net.UDPAddr
	ifIndex int
	in      chan received
	// stop is closed by Remove; reprofile signals a new profile in prof;
	// quit, closed by an Add of the same key, ends the AdminDown drain of
	// a removed session at once.
	stop      chan struct{}
	quit      chan struct{}
	reprofile chan struct{}
	done      chan struct{}
	port      uint16

	mu    sync.Mutex
	info  Info
	since time.Time
	prof  Profile
}

// Start opens the listeners and returns a running Manager. It runs until
// ctx ends or Close is called.
func Start(ctx context.Context, opts Options) (*Manager, error) {
	if opts.OpenSocket == nil {
		opts.OpenSocket = func(open func() error) error { return open() }
	}
	ctx, cancel := context.WithCancel(ctx)
	m := &Manager{
		log: opts.Log, opts: opts, ctx: ctx, cancel: cancel, listeners: map[listenerKey]net.PacketConn{},
		byKey: map[Key]*session{}, byDiscr: map[uint32]*session{}, byRemote: map[netip.Addr][]*session{},
		ports: map[uint16]bool{}, draining: map[Key]*session{},
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.listen(ControlPort, "udp4"); err != nil {
		cancel()
		return nil, err
	}
	if err := m.listen(ControlPort, "udp6"); err != nil {
		// A host without IPv6 still runs IPv4 sessions.
		m.log.Info("no IPv6 BFD listener", "error", err.Error())
	}
	go func() {
		<-ctx.Done()
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, l := range m.listeners {
			_ = l.Close()
		}
	}()
	return m, nil
}

// listen opens the listener of a port and family ("udp4" or "udp6")
// unless it is open, and serves it. m.mu is held.
func (m *Manager) listen(port int, network string) error {
	lk := listenerKey{port: port, network: network}
	if m.listeners[lk] != nil {
		return nil
	}
	if m.ctx.Err() != nil {
		return fmt.Errorf("BFD manager stopped: %w", m.ctx.Err())
	}
	multihop := port == MultihopControlPort
	family, addr := "IPv4", fmt.Sprintf("0.0.0.0:%d", port)
	if network == "udp6" {
		family, addr = "IPv6", fmt.Sprintf("[::]:%d", port)
	}
	var c net.PacketConn
	err := m.opts.OpenSocket(func() error {
		var err error
		lc := net.ListenConfig{Control: reuseAddr}
		if c, err = lc.ListenPacket(m.ctx, network, addr); err != nil {
			return fmt.Errorf("listening on UDP port %d (%s): %w", port, family, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	var read func(buf []byte) (arrival, error)
	if network == "udp4" {
		p := ipv4.NewPacketConn(c)
		if err := p.SetControlMessage(ipv4.FlagTTL|ipv4.FlagDst|ipv4.FlagInterface, true); err != nil {
			err = fmt.Errorf("asking for the TTL of received packets (IP_RECVTTL): %w", err)
			return errors.Join(err, c.Close())
		}
		read = func(buf []byte) (arrival, error) { return read4(p, buf) }
	} else {
		p := ipv6.NewPacketConn(c)
		if err := p.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst|ipv6.FlagInterface, true); err != nil {
			err = fmt.Errorf("asking for the hop limit of received packets (IPV6_RECVHOPLIMIT): %w", err)
			return errors.Join(err, c.Close())
		}
		read = func(buf []byte) (arrival, error) { return read6(p, buf) }
	}
	m.listeners[lk] = c
	m.wg.Add(1)
	go m.serve(fmt.Sprintf("%s port %d", family, port), func(buf []byte) (arrival, error) {
		a, err := read(buf)
		a.multihop = multihop
		return a, err
	})
	return nil
}

// Close stops all sessions (without notifying the peers) and the
// listeners, and waits for them.
func (m *Manager) Close() {
	// Under m.mu, so that no Add starts a goroutine after Wait began.
	m.mu.Lock()
	m.cancel()
	m.mu.Unlock()
	m.wg.Wait()
}

// Stats returns the listeners' counters.
func (m *Manager) Stats() ManagerStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}

// ErrPeer is wrapped by Add's errors about the Peer itself.
var ErrPeer = errors.New("invalid BFD peer")

// Add starts a session, or changes the profile of the session with the
// same Key (a Poll Sequence when it is Up). ctx bounds the opening of the
// session's socket.
func (m *Manager) Add(ctx context.Context, p Peer) error {
	if err := p.Profile.Validate(); err != nil {
		return err
	}
	k := p.Key()
	switch {
	case !k.Local.IsValid() || !k.Remote.IsValid():
		return fmt.Errorf("%w %s: local and remote addresses are required", ErrPeer, k)
	case k.Local.Is4() != k.Remote.Is4():
		return fmt.Errorf("%w %s: addresses of different families", ErrPeer, k)
	case k.Remote.IsLinkLocalUnicast() && k.Remote.Is6() && p.Interface == "":
		return fmt.Errorf("%w %s: a link-local peer needs an interface", ErrPeer, k)
	case k.Multihop && k.Remote.IsLinkLocalUnicast():
		return fmt.Errorf("%w %s: a link-local peer is one hop away; multihop BFD needs a routable address", ErrPeer, k)
	}
	if m.ctx.Err() != nil {
		return fmt.Errorf("BFD manager stopped: %w", m.ctx.Err())
	}
	m.mu.Lock()
	if s, ok := m.byKey[k]; ok {
		m.mu.Unlock()
		m.update(s, p.Profile)
		return nil
	}
	if k.Multihop {
		network := "udp4"
		if k.Remote.Is6() {
			network = "udp6"
		}
		if err := m.listen(MultihopControlPort, network); err != nil {
			m.mu.Unlock()
			return fmt.Errorf("BFD peer %s: %w", k, err)
		}
	}
	m.mu.Unlock()

	s := &session{peer: p, key: k, prof: p.Profile, in: make(chan received, inboxLen),
		stop: make(chan struct{}), quit: make(chan struct{}), reprofile: make(chan struct{}, 1), done: make(chan struct{})}
	zone := ""
	if k.Remote.Is6() && (k.Remote.IsLinkLocalUnicast() || k.Local.IsLinkLocalUnicast()) {
		zone = p.Interface
	}
	port := uint16(ControlPort)
	if k.Multihop {
		port = MultihopControlPort
	}
	s.dst = net.UDPAddrFromAddrPort(netip.AddrPortFrom(k.Remote.WithZone(zone), port))
	err := m.opts.OpenSocket(func() error {
		if p.Interface != "" {
			ifi, err := net.InterfaceByName(p.Interface)
			if err != nil {
				return fmt.Errorf("BFD peer %s: %w", k, err)
			}
			s.ifIndex = ifi.Index
		}
		var err error
		s.conn, s.port, err = m.openSender(ctx, k.Local.WithZone(zone), p.Interface)
		if err != nil {
			return fmt.Errorf("BFD peer %s: %w", k, err)
		}
		return nil
	})
	if err != nil {
		return err
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx.Err() != nil { // Close ran meanwhile
		_ = s.conn.Close()
		delete(m.ports, s.port)
		return fmt.Errorf("BFD manager stopped: %w", m.ctx.Err())
	}
	if _, ok := m.byKey[k]; ok { // lost a race with another Add
		_ = s.conn.Close()
		delete(m.ports, s.port)
		return nil
	}
	discr := rand.Uint32()
	for discr == 0 || m.byDiscr[discr] != nil {
		discr = rand.Uint32()
	}
	now := time.Now()
	s.sm, err = NewSession(now, p.Profile, discr, nil)
	if err != nil {
		_ = s.conn.Close()
		delete(m.ports, s.port)
		return err
	}
	s.info, s.since = s.sm.Info(), now
	// A removed session of this key must stop telling the peer AdminDown:
	// the peer (whose discriminator is unchanged) would take the new
	// session down.
	if old, ok := m.draining[k]; ok {
		close(old.quit)
		delete(m.draining, k)
	}
	m.byKey[k] = s
	m.byDiscr[discr] = s
	m.byRemote[k.Remote] = append(m.byRemote[k.Remote], s)
	m.wg.Add(1)
	go m.run(s)
	m.log.Info("BFD session added", "peer", k.String(), "discriminator", discr,
		"rx", p.Profile.ReceiveInterval, "tx", p.Profile.TransmitInterval, "multiplier", p.Profile.DetectMultiplier, "passive", p.Profile.Passive,
		"multihop", k.Multihop)
	return nil
}

func (m *Manager) update(s *session, p Profile) {
	s.mu.Lock()
	same := s.prof == p
	s.prof = p
	s.mu.Unlock()
	if !same {
		select {
		case s.reprofile <- struct{}{}:
		default: // a signal is pending; the session reads the latest profile
		}
	}
}

// Remove ends a session: it goes AdminDown and, for about the peer's
// detection time, tells the peer so (RFC 5880 §6.8.16), then closes its
// socket. A peer that is not Added is not an error. Remove and Add never
// wait for a session's goroutine, so OnChange may call them.
func (m *Manager) Remove(k Key) {
	k = k.normal()
	m.mu.Lock()
	s, ok := m.byKey[k]
	if ok {
		m.unlink(s)
		m.draining[k] = s
	}
	m.mu.Unlock()
	if ok {
		close(s.stop)
	}
}

// unlink removes a session from the demultiplexing maps; m.mu is held.
func (m *Manager) unlink(s *session) {
	delete(m.byKey, s.key)
	delete(m.byDiscr, s.sm.LocalDiscriminator())
	list := m.byRemote[s.key.Remote]
	for i, c := range list {
		if c == s {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(m.byRemote, s.key.Remote)
	} else {
		m.byRemote[s.key.Remote] = list
	}
}

// Sessions returns a snapshot of all sessions, sorted by key.
func (m *Manager) Sessions() []SessionInfo {
	m.mu.Lock()
	list := make([]*session, 0, len(m.byKey))
	for _, s := range m.byKey {
		list = append(list, s)
	}
	m.mu.Unlock()
	out := make([]SessionInfo, 0, len(list))
	for _, s := range list {
		s.mu.Lock()
		out = append(out, SessionInfo{Peer: s.key, Profile: s.prof, Info: s.info, Since: s.since})
		s.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Peer.String() < out[j].Peer.String() })
	return out
}

// run is a session's goroutine: it owns the Session.
func (m *Manager) run(s *session) {
	defer m.wg.Done()
	defer close(s.done)
	defer func() {
		_ = s.conn.Close()
		m.mu.Lock()
		delete(m.ports, s.port)
		if m.draining[s.key] == s {
			delete(m.draining, s.key)
		}
		m.mu.Unlock()
	}()
	log := m.log.WithValues("peer", s.key.String())
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var drainUntil time.Time
	stop := s.stop
	for {
		next := s.sm.Next()
		wait := time.Hour
		if !next.IsZero() {
			wait = time.Until(next)
		}
		timer.Reset(max(wait, 0))
		var st Step
		select {
		case <-m.ctx.Done():
			return
		case <-s.quit:
			log.V(1).Info("BFD session replaced while telling the peer AdminDown")
			return
		case rx := <-s.in:
			var err error
			if st, err = s.sm.Receive(rx.at, rx.p); err != nil {
				log.V(1).Info("discarded a BFD packet", "error", err.Error())
			}
		case <-stop:
			// Tell the peer for about its detection time of us.
			stop = nil
			now := time.Now()
			st = s.sm.AdminDown(now)
			s.mu.Lock()
			mult := s.prof.DetectMultiplier
			s.mu.Unlock()
			drainUntil = now.Add(min(maxDrain, time.Duration(mult)*s.sm.TxInterval()))
		case <-s.reprofile:
			s.mu.Lock()
			p := s.prof
			s.mu.Unlock()
			if err := s.sm.SetProfile(time.Now(), p); err != nil {
				log.Error(err, "changing the BFD profile")
			}
		case <-timer.C:
			st = s.sm.Tick(time.Now())
		}
		m.apply(log, s, st)
		if !drainUntil.IsZero() && !time.Now().Before(drainUntil) {
			log.V(1).Info("BFD session removed")
			return
		}
	}
}

func (m *Manager) apply(log logr.Logger, s *session, st Step) {
	if st.Send {
		if l := log.V(2); l.Enabled() {
			l.Info("BFD packet out", "packet", fmt.Sprintf("%+v", st.Packet))
		}
		b, err := st.Packet.Marshal()
		if err == nil {
			_, err = s.conn.WriteToUDP(b, s.dst)
		}
		if err != nil {
			log.V(1).Info("sending a BFD packet failed", "error", err.Error())
		}
	}
	s.mu.Lock()
	s.info = s.sm.Info()
	if st.Transition != nil {
		s.since = st.Transition.At
	}
	s.mu.Unlock()
	if t := st.Transition; t != nil {
		log.Info("BFD session state changed", "from", t.From.String(), "to", t.To.String(), "diag", t.Diag.String(),
			"remoteState", t.RemoteState.String(), "remoteDiag", t.RemoteDiag.String(), "peerFailed", t.PeerFailed())
		if m.opts.OnChange != nil {
			m.opts.OnChange(Change{Peer: s.key, Transition: *t})
		}
	}
}

// arrival is a packet off a listener with what the kernel told of it.
type arrival struct {
	b        []byte
	src, dst netip.Addr
	ttl      int
	ifIndex  int
	// multihop tells that it came to the multihop port.
	multihop bool
}

// read4 reads an IPv4 datagram with its TTL, destination and interface.
func read4(c *ipv4.PacketConn, buf []byte) (arrival, error) {
	n, cm, src, err := c.ReadFrom(buf)
	if err != nil {
		return arrival{}, err
	}
	a := arrival{b: buf[:n], ttl: -1}
	if ua, ok := src.(*net.UDPAddr); ok {
		a.src = ua.AddrPort().Addr().Unmap()
	}
	if cm != nil {
		a.ttl, a.ifIndex = cm.TTL, cm.IfIndex
		a.dst, _ = netip.AddrFromSlice(cm.Dst)
		a.dst = a.dst.Unmap()
	}
	return a, nil
}

// read6 reads an IPv6 datagram with its hop limit, destination and
// interface.
func read6(c *ipv6.PacketConn, buf []byte) (arrival, error) {
	n, cm, src, err := c.ReadFrom(buf)
	if err != nil {
		return arrival{}, err
	}
	a := arrival{b: buf[:n], ttl: -1}
	if ua, ok := src.(*net.UDPAddr); ok {
		a.src = ua.AddrPort().Addr().WithZone("").Unmap()
	}
	if cm != nil {
		a.ttl, a.ifIndex = cm.HopLimit, cm.IfIndex
		a.dst, _ = netip.AddrFromSlice(cm.Dst)
	}
	return a, nil
}

// serve hands every datagram of a listener to dispatch until it closes.
func (m *Manager) serve(family string, read func(buf []byte) (arrival, error)) {
	defer m.wg.Done()
	buf := make([]byte, 1500)
	for {
		a, err := read(buf)
		if err != nil {
			if m.ctx.Err() == nil {
				m.log.Error(err, "reading the "+family+" BFD listener")
			}
			return
		}
		m.dispatch(a)
	}
}

// dispatch checks a received datagram and hands it to its session.
func (m *Manager) dispatch(a arrival) {
	at := time.Now()
	p, err := Unmarshal(a.b)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.stats.Malformed++
		m.log.V(1).Info("dropped a malformed BFD packet", "from", a.src.String(), "error", err.Error())
		return
	}
	// Single-hop: only a neighbour can send TTL 255 (RFC 5881 §5).
	if !a.multihop && a.ttl != TTL {
		m.stats.BadTTL++
		m.log.V(1).Info("dropped a BFD packet without TTL 255", "from", a.src.String(), "ttl", a.ttl)
		return
	}
	if l := m.log.V(2); l.Enabled() {
		l.Info("BFD packet in", "from", a.src.String(), "ttl", a.ttl, "multihop", a.multihop, "packet", fmt.Sprintf("%+v", p))
	}
	s := m.lookup(p, a)
	if s == nil {
		m.stats.NoSession++
		m.log.V(1).Info("dropped a BFD packet for no session", "from", a.src.String(), "to", a.dst.String(), "yourDiscriminator", p.YourDiscriminator, "multihop", a.multihop)
		return
	}
	// Multihop: no TTL is sure (RFC 5883 §5), but the session's minimum
	// keeps out packets from farther than the peer should be.
	if a.multihop {
		s.mu.Lock()
		least := s.prof.minTTL()
		s.mu.Unlock()
		if a.ttl < least {
			m.stats.BadTTL++
			m.log.V(1).Info("dropped a multihop BFD packet below the minimum TTL", "from", a.src.String(), "ttl", a.ttl, "minimumTTL", least)
			return
		}
	}
	select {
	case s.in <- received{p: p, at: at}:
	default:
		m.stats.Overflow++
	}
}

// lookup finds a packet's session (RFC 5880 §6.8.6): by Your
// Discriminator when it is set, else by source address, destination
// address and interface. The session's remote address must match the
// source either way, and its kind the port the packet came to (a
// single-hop session never takes a multihop packet, nor the reverse).
// m.mu is held.
func (m *Manager) lookup(p Packet, a arrival) *session {
	match := func(s *session) bool {
		return s.key.Multihop == a.multihop && s.key.Remote == a.src &&
			(!a.dst.IsValid() || s.key.Local == a.dst) &&
			(s.ifIndex == 0 || a.ifIndex == 0 || s.ifIndex == a.ifIndex)
	}
	if p.YourDiscriminator != 0 {
		if s := m.byDiscr[p.YourDiscriminator]; s != nil && match(s) {
			return s
		}
		return nil
	}
	for _, s := range m.byRemote[a.src] {
		if match(s) {
			return s
		}
	}
	return nil
}

// openSender opens a session's socket: bound to the local address, the
// interface and a port in 49152–65535 that no other session of the
// Manager uses (RFC 5881 §4), sending with TTL 255.
func (m *Manager) openSender(ctx context.Context, local netip.Addr, ifName string) (*net.UDPConn, uint16, error) {
	network := "udp4"
	if local.Is6() {
		network = "udp6"
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			set := func(level, opt, v int, name string) {
				if serr == nil {
					if err := unix.SetsockoptInt(int(fd), level, opt, v); err != nil {
						serr = fmt.Errorf("setting %s: %w", name, err)
					}
				}
			}
			if ifName != "" {
				if err := bindToDevice(int(fd), ifName); err != nil {
					serr = fmt.Errorf("binding to interface %s: %w", ifName, err)
				}
			}
			if local.Is4() {
				set(unix.IPPROTO_IP, unix.IP_TTL, TTL, "IP_TTL")
				set(unix.IPPROTO_IP, unix.IP_TOS, tos, "IP_TOS")
			} else {
				set(unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, TTL, "IPV6_UNICAST_HOPS")
				set(unix.IPPROTO_IPV6, unix.IPV6_TCLASS, tos, "IPV6_TCLASS")
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	// Start at a random port and walk the range, skipping the ports of
	// other sessions and ports in use on the host.
	const span = MaxSourcePort - MinSourcePort + 1
	first := rand.IntN(span)
	lastErr := errors.New("all ports are taken by other sessions")
	for i := 0; i < span; i++ {
		port := uint16(MinSourcePort + (first+i)%span)
		m.mu.Lock()
		taken := m.ports[port]
		m.ports[port] = true
		m.mu.Unlock()
		if taken {
			continue
		}
		c, err := lc.ListenPacket(ctx, network, netip.AddrPortFrom(local, port).String())
		if err == nil {
			return c.(*net.UDPConn), port, nil
		}
		m.mu.Lock()
		delete(m.ports, port)
		m.mu.Unlock()
		lastErr = err
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return nil, 0, fmt.Errorf("opening a UDP socket on %s with a source port in %d–%d: %w", local, MinSourcePort, MaxSourcePort, lastErr)
}

func reuseAddr(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("setting SO_REUSEADDR: %w", serr)
	}
	return nil
}
