// Package membership tells a speaker which speakers are alive.
//
// It wraps hashicorp/memberlist (SWIM with the Lifeguard extensions) tuned
// for a LAN: memberlist itself declares a crashed speaker dead in about a
// second (see LANTiming for the measurements and the trade-off against
// flapping), the fast path below drops it in a few hundred milliseconds
// on kernel-level evidence, and
// one that stops gracefully (Leave) is dropped by the others within one
// gossip interval. The layer-2 election feeds on Members and re-runs on Changes.
//
// A member is listed from the moment it is known until it is declared dead
// or has left; a merely suspect member stays listed, since suspicion is the
// window in which a slow but healthy member refutes. A member restarting
// under the same name is listed again as soon as it rejoins: memberlist
// resolves the old and new incarnations.
//
// # Fast path: kernel-level evidence
//
// memberlist cannot tell a dead speaker from one that gets no CPU: both
// miss their acks, so it must wait out the suspicion window (600 ms to
// 1.2 s with LANTiming) for a refutation that never comes. The kernel of
// the speaker's node can tell, and does so whatever the processes on
// either side are doing. When one of memberlist's probes gets no UDP ack
// within ProbeTimeout, memberlist tries a TCP connect for the rest of the
// probe interval; this package makes that connect (two SYNs, two sockets)
// and reads its outcome from the kernel:
//
//   - refused (a RST): the node is up and nothing listens on the
//     memberlist port — the speaker process is gone;
//   - unanswered: both sockets are still in SYN_SENT (TCP_INFO) after at
//     least ProbeTimeout/2 (50 ms), measured from after connect(2)
//     returned to before the state was read, while memberlist's own health
//     score is 0 — the node's kernel does not answer: it is down or off
//     the LAN.
//
// Either marks the member down at once: Members leaves it out and Changes
// fires, while memberlist's own detector runs on unchanged (same timing,
// same false-death rate) and declares the member dead a few hundred
// milliseconds later. The member that found the evidence tells the others
// (a user message, sent directly and gossiped); each checks for itself with
// its own connect (refused, or unanswered for 50 ms) before marking, and
// ignores the hint if the connect succeeds. A forged or mistaken hint can
// therefore mark nothing.
//
// Why a live member cannot be marked: a speaker that is alive but starved
// (CPU, a GC pause, SIGSTOP) still has a listening socket, and its
// kernel answers the SYN and completes the handshake from the accept
// backlog without the process running — the connect succeeds and nothing
// happens (memberlist may still suspect it, and it refutes as before). On
// the prober's side, a starved prober cannot produce "unanswered": a
// SYN-ACK that arrives while it waits for a CPU is processed by its
// kernel, the socket leaves SYN_SENT, and the state is read from the
// kernel, not inferred from a timer firing late; the silence counted is
// only the time the SYN was provably out. One lost packet is covered by
// the second SYN. A prober that is itself cut off would see everyone
// unanswered: its failed probes raise its health score (no nacks from
// anyone), and a score above 0 disables "unanswered"; its first
// verdicts, if any, only change its own view while it cannot reach anyone.
// What is left: a node whose kernel does not answer a SYN for 50 ms while
// memberlist's UDP ping also went unanswered for 100 ms — a VM paused by
// its hypervisor, say — is taken for down, as memberlist would after its
// suspicion window.
//
// A marked member is still known to memberlist until it declares it dead:
// a speaker that comes back under the same name from another address in
// that window is refused by memberlist until then, as before.
//
// A mark is cleared when the member acks one of memberlist's pings, when
// a TCP connect to it succeeds, and when memberlist itself decides (the
// member joins again, leaves or is declared dead). A mark memberlist has
// not confirmed after 10 s is dropped (memberlist disagrees, so it wins),
// and the fast path then ignores evidence about that member for a minute,
// so an unforeseen false verdict costs at most one move and back.
package membership

import (
	"errors"
	"fmt"
	"log"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
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
	// Meta is this member's metadata, which every member learns (see
	// Metadata); at most MaxMetaSize bytes. SetMeta changes it.
	Meta []byte
	// LeftGrace is how long a member counts as left after its leaving
	// notice (see Left): longer than a leaving member goes on answering
	// for its hand-over. DefaultLeftGrace when zero.
	LeftGrace time.Duration
	// JoinState, when set, is the state this member hands a member that
	// joins it, or that it joins, and takes from it (see JoinState).
	JoinState JoinState
}

// JoinState is state exchanged with every member this one joins or is
// joined by (memberlist's push/pull on a join, both ways, over the same
// encrypted stream as the member lists), and never on the periodic
// anti-entropy exchanges: what a member that starts needs from the
// others, which they should not resend every PushPullInterval. Both
// methods run on memberlist's goroutines and must not block for long.
type JoinState interface {
	// LocalJoinState is this member's state to hand over; nil for none.
	LocalJoinState() []byte
	// MergeJoinState takes another member's state.
	MergeJoinState([]byte)
}

// MaxMetaSize is the most metadata a member may carry: memberlist's limit.
const MaxMetaSize = memberlist.MetaMaxSize

// Membership is this speaker's view of the live speakers. Its methods are
// safe for concurrent use.
type Membership struct {
	log       logr.Logger
	timing    Timing
	leftGrace time.Duration
	self      netip.AddrPort
	list      *memberlist.Memberlist
	changes   chan struct{}
	fast      *fastPath

	meta atomic.Pointer[[]byte] // this member's metadata

	metaMu sync.Mutex
	// metas is the metadata of every member seen since New, gone ones
	// included: a member that left may still be heard on the network for
	// a moment.
	metas map[string][]byte
	// departed are the members that said they were leaving (Leave), and
	// when, until they join again: gone on purpose, not dead or cut off.
	departed map[string]time.Time

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
	if len(cfg.Meta) > MaxMetaSize {
		return nil, fmt.Errorf("membership: Meta is %d bytes, want at most %d", len(cfg.Meta), MaxMetaSize)
	}
	timing := cfg.Timing.withDefaults()
	if err := timing.validate(); err != nil {
		return nil, fmt.Errorf("membership: Timing: %w", err)
	}

	m := &Membership{
		log:       cfg.Logger.WithName("membership"),
		timing:    timing,
		self:      netip.AddrPortFrom(addr, uint16(port)),
		changes:   make(chan struct{}, 1),
		metas:     map[string][]byte{},
		departed:  map[string]time.Time{},
		leftGrace: cfg.LeftGrace,
	}
	if m.leftGrace <= 0 {
		m.leftGrace = DefaultLeftGrace
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
	m.meta.Store(ptr(slices.Clone(cfg.Meta)))
	mc.Delegate = delegate{fp: m.fast, meta: &m.meta, departing: m.departing, state: cfg.JoinState}
	mc.Ping = delegate{fp: m.fast}
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

// Metadata returns the metadata (Config.Meta) of every member seen since
// New, this one and those gone since included, by member name. The map is
// the caller's; the byte slices are shared and must not be modified.
func (m *Membership) Metadata() map[string][]byte {
	m.metaMu.Lock()
	defer m.metaMu.Unlock()
	out := make(map[string][]byte, len(m.metas))
	for name, meta := range m.metas {
		out[name] = meta
	}
	return out
}

// DefaultLeftGrace is how long after its leaving notice a member counts
// as left (see Left) unless Config.LeftGrace says otherwise.
const DefaultLeftGrace = 15 * time.Second

// Left tells whether member name said it was leaving (its Leave) less
// than Config.LeftGrace ago and has not joined again since. A member gone
// without saying so died, hangs or is cut off from this one: only then
// may it still be answering on the network as if nothing had happened;
// so may one that left and came back where this one cannot hear it (with
// another memberlist secret, say), once the grace is over.
func (m *Membership) Left(name string) bool {
	m.metaMu.Lock()
	defer m.metaMu.Unlock()
	at, ok := m.departed[name]
	return ok && time.Since(at) < m.leftGrace
}

// departing records a member's notice that it is leaving.
func (m *Membership) departing(name string) {
	m.metaMu.Lock()
	m.departed[name] = time.Now()
	m.metaMu.Unlock()
	m.log.V(1).Info("Member says it is leaving", "member", name)
}

// Meta returns this member's metadata; the caller must not modify it.
func (m *Membership) Meta() []byte { return *m.meta.Load() }

// SetMeta changes this member's metadata (at most MaxMetaSize bytes) and
// tells the other members, waiting up to timeout (0: no limit) for the
// update to go out.
func (m *Membership) SetMeta(meta []byte, timeout time.Duration) error {
	if len(meta) > MaxMetaSize {
		return fmt.Errorf("membership: metadata is %d bytes, want at most %d", len(meta), MaxMetaSize)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.meta.Store(ptr(slices.Clone(meta)))
	if err := m.list.UpdateNode(timeout); err != nil {
		return fmt.Errorf("membership: sending the new metadata: %w", err)
	}
	m.remember(m.list.LocalNode())
	return nil
}

func ptr[T any](v T) *T { return &v }

// remember keeps a member's metadata (see Metadata).
func (m *Membership) remember(n *memberlist.Node) {
	m.metaMu.Lock()
	defer m.metaMu.Unlock()
	if len(n.Meta) == 0 {
		delete(m.metas, n.Name)
		return
	}
	m.metas[n.Name] = slices.Clone(n.Meta)
}

// Changes returns a channel that receives a value whenever the set of
// members, or a member's metadata, may have changed. Signals are coalesced (buffer of one, never
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
	// The notice first, so that the others know this member is gone on
	// purpose (Left) before they see it gone: memberlist tells a leave
	// from a death only internally.
	m.fast.tell(encodeLeaving(m.fast.self), "")
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

// RequestJoinState exchanges join state (see JoinState) with up to n
// other live members, picked at random, and returns how many answered: a
// member that started with nothing to plan from asks again this way
// rather than wait to be joined.
func (m *Membership) RequestJoinState(n int) int {
	m.mu.Lock()
	closed := m.closed || m.left
	m.mu.Unlock()
	if closed {
		return 0
	}
	var addrs []string
	for _, node := range m.list.Members() {
		if node.Name != m.fast.self {
			addrs = append(addrs, node.Address())
		}
	}
	rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	answered := 0
	for _, a := range addrs[:min(n, len(addrs))] {
		if _, err := m.list.Join([]string{a}); err != nil {
			m.log.V(1).Info("Join state exchange failed", "address", a, "error", err.Error())
			continue
		}
		answered++
	}
	return answered
}

// syncWith exchanges the full state with the member at addr (a
// push/pull); errors only mean the periodic push/pull or rejoin will do.
func (m *Membership) syncWith(addr string) {
	m.mu.Lock()
	closed := m.closed || m.left
	m.mu.Unlock()
	if closed {
		return
	}
	if _, err := m.list.Join([]string{addr}); err != nil {
		m.log.V(1).Info("State exchange with a returning member failed", "address", addr, "error", err.Error())
	}
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
	e.m.remember(n)
	e.m.metaMu.Lock()
	delete(e.m.departed, n.Name)
	e.m.metaMu.Unlock()
	if e.m.fast.joined(n) && n.Name != e.m.fast.self {
		// A member back from the dead, typically across a healed
		// partition: it may still be dead in the views of the members
		// that have not heard from it, and until it hears so itself
		// it does not refute (RejoinInterval or a push/pull later).
		// A full state exchange now tells it, both ways.
		go e.m.syncWith(n.Address())
	}
	e.m.log.Info("Member joined", "member", n.Name, "address", n.Address())
	e.m.notify()
}

// NotifyLeave is called both for a member that left and one declared dead.
func (e events) NotifyLeave(n *memberlist.Node) {
	e.m.fast.gone(n)
	e.m.log.Info("Member gone (left or declared dead)", "member", n.Name, "address", n.Address())
	e.m.notify()
}

// NotifyUpdate reports metadata changes, which do not change the set but
// may change what the members make of it (a speaker that says it is
// ready to be elected).
func (e events) NotifyUpdate(n *memberlist.Node) {
	e.m.remember(n)
	e.m.notify()
}
