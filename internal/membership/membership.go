// Package membership tells a speaker which speakers are alive.
//
// It wraps hashicorp/memberlist (SWIM with the Lifeguard extensions) tuned
// for a LAN: a crashed speaker is declared dead in about a second (see
// LANTiming for the measurements and the trade-off against flapping), and
// one that stops gracefully (Leave) is dropped by the others within one
// gossip interval. The layer-2 election feeds on Members and re-runs on Changes.
//
// A member is listed from the moment it is known until it is declared dead
// or has left; a merely suspect member stays listed, since suspicion is the
// window in which a slow but healthy member refutes. A member restarting
// under the same name is listed again as soon as it rejoins: memberlist
// resolves the old and new incarnations.
package membership

import (
	"errors"
	"fmt"
	"log"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/hashicorp/memberlist"
)

// DefaultPort is memberlist's customary port, used for TCP and UDP.
const DefaultPort = 7946

// ErrClosed is returned by Join after Leave or Shutdown, and by Leave
// after Shutdown.
var ErrClosed = errors.New("membership: left or shut down")

// Config configures a Membership.
type Config struct {
	// NodeName is the Kubernetes node name; it is the member name and
	// must be unique in the cluster.
	NodeName string
	// BindAddr is the node's IP address; the member listens and is reached
	// there.
	BindAddr string
	// BindPort is the TCP and UDP port; 0 means DefaultPort.
	BindPort int
	// SecretKey is a 16, 24 or 32 byte AES key (AES-128/192/256-GCM) shared
	// by all speakers, typically from a Secret. Nil means unencrypted and
	// unauthenticated gossip, which New warns about.
	SecretKey []byte
	// Timing tunes failure detection; zero fields take LANTiming's values.
	Timing Timing
	// Logger receives membership events at V(0) and memberlist's own log
	// at V(1) and V(2).
	Logger logr.Logger
}

// Membership is this speaker's view of the live speakers. Its methods are
// safe for concurrent use.
type Membership struct {
	log     logr.Logger
	timing  Timing
	self    netip.AddrPort
	list    *memberlist.Memberlist
	changes chan struct{}
	fast    *fastPath

	mu       sync.Mutex
	left     bool
	closed   bool
	stopJoin func() // stops the running background join, if any
}

// New starts a member listening on cfg.BindAddr:cfg.BindPort. It knows only
// itself until Join.
func New(cfg Config) (*Membership, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("membership: NodeName is empty")
	}
	addr, err := netip.ParseAddr(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("membership: BindAddr: %w", err)
	}
	addr = addr.Unmap()
	if addr.IsUnspecified() {
		return nil, fmt.Errorf("membership: BindAddr %s: need the node's own address, others reach the member there", addr)
	}
	port := cfg.BindPort
	if port == 0 {
		port = DefaultPort
	}
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("membership: BindPort %d out of range", cfg.BindPort)
	}
	switch len(cfg.SecretKey) {
	case 0, 16, 24, 32:
	default:
		return nil, fmt.Errorf("membership: SecretKey is %d bytes, want 16, 24 or 32", len(cfg.SecretKey))
	}
	timing := cfg.Timing.withDefaults()
	if err := timing.validate(); err != nil {
		return nil, fmt.Errorf("membership: Timing: %w", err)
	}

	m := &Membership{
		log:     cfg.Logger.WithName("membership"),
		timing:  timing,
		self:    netip.AddrPortFrom(addr, uint16(port)),
		changes: make(chan struct{}, 1),
	}
	m.fast = newFastPath(cfg.NodeName, m.log, timing, m.notify)

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.NodeName
	mc.BindAddr = addr.String()
	mc.BindPort = port
	mc.AdvertiseAddr = addr.String()
	mc.AdvertisePort = port
	mc.ProbeInterval = timing.ProbeInterval
	mc.ProbeTimeout = timing.ProbeTimeout
	mc.SuspicionMult = timing.SuspicionMult
	mc.SuspicionMaxTimeoutMult = timing.SuspicionMaxTimeoutMult
	mc.GossipInterval = timing.GossipInterval
	mc.PushPullInterval = timing.PushPullInterval
	mc.GossipToTheDeadTime = timing.GossipToTheDeadTime
	mc.TCPTimeout = timing.TCPTimeout
	mc.DeadNodeReclaimTime = timing.DeadNodeReclaimTime
	if len(cfg.SecretKey) > 0 {
		mc.SecretKey = slices.Clone(cfg.SecretKey)
	}
	mc.Events = events{m}
	mc.Delegate = delegate{m.fast}
	mc.Ping = delegate{m.fast}
	mc.Logger = log.New(logWriter{cfg.Logger.WithName("memberlist")}, "", 0)
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{mc.BindAddr},
		BindPort:  port,
		Logger:    mc.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("membership: start member %q on %s: %w", cfg.NodeName, m.self, err)
	}
	mc.Transport = &transport{NetTransport: nt, fp: m.fast}

	list, err := memberlist.Create(mc)
	if err != nil {
		_ = nt.Shutdown()
		return nil, fmt.Errorf("membership: start member %q on %s: %w", cfg.NodeName, m.self, err)
	}
	m.list = list
	m.fast.list.Store(list)
	m.log.Info("Member started", "node", cfg.NodeName, "address", m.self.String(), "encrypted", len(cfg.SecretKey) > 0)
	if len(cfg.SecretKey) == 0 {
		m.log.Info("WARNING: membership gossip is neither encrypted nor authenticated; set a secret key so that no one on the network can join or forge member state")
	}
	return m, nil
}

// Members returns the names of the live members, this one included, sorted:
// those memberlist lists (alive or suspect) less those marked down on
// kernel-level evidence (see the package documentation).
func (m *Membership) Members() []string {
	nodes := m.list.Members()
	names := make([]string, 0, len(nodes))
	for _, n := range nodes {
		names = append(names, n.Name)
	}
	names = m.fast.filter(names)
	slices.Sort(names)
	return names
}

// Changes returns a channel that receives a value whenever the set of
// members may have changed. Signals are coalesced (buffer of one, never
// blocking memberlist), so a receiver should re-read Members; it is meant
// for a single receiver. One signal is pending after New (this member
// joining itself).
func (m *Membership) Changes() <-chan struct{} {
	return m.changes
}

// Leave tells the other members that this one is going away, so they drop
// it at once instead of detecting a failure. It waits up to timeout (0: no
// limit) for the message to go out. Call Shutdown afterwards.
func (m *Membership) Leave(timeout time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.left = true
	m.stopJoinLocked()
	start := time.Now()
	if err := m.list.Leave(timeout); err != nil {
		return fmt.Errorf("membership: leave: %w", err)
	}
	m.log.Info("Left the membership", "took", time.Since(start).String())
	return nil
}

// Shutdown stops the member without telling the others (they will detect
// it as failed; call Leave first to avoid that). It is idempotent.
func (m *Membership) Shutdown() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	m.stopJoinLocked()
	if err := m.list.Shutdown(); err != nil {
		return fmt.Errorf("membership: shutdown: %w", err)
	}
	return nil
}

func (m *Membership) notify() {
	select {
	case m.changes <- struct{}{}:
	default:
	}
}

// events receives memberlist's notifications. They are called with
// memberlist's state lock held: do not call back into memberlist here.
type events struct{ m *Membership }

func (e events) NotifyJoin(n *memberlist.Node) {
	e.m.fast.forget(n.Name)
	e.m.log.Info("Member joined", "member", n.Name, "address", n.Address())
	e.m.notify()
}

// NotifyLeave is called both for a member that left and one declared dead.
func (e events) NotifyLeave(n *memberlist.Node) {
	e.m.fast.forget(n.Name)
	e.m.log.Info("Member gone (left or declared dead)", "member", n.Name, "address", n.Address())
	e.m.notify()
}

// NotifyUpdate reports metadata changes, which do not change the set.
func (e events) NotifyUpdate(*memberlist.Node) {}
