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
	// ExtraSecretKeys are keys this member also accepts (it decrypts with
	// any of them, and encrypts with SecretKey only), for rotating the
	// key without splitting the members: first every member takes the
	// new key as an extra one, then as its SecretKey with the old one
	// extra, then alone. Each is 16, 24 or 32 bytes; they need a
	// SecretKey.
	ExtraSecretKeys [][]byte
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
	// NoEchoChecks turns the echo checks off (see echo.go): no ICMP
	// echo to the watched members' nodes, about 60 kB/s per node, for
	// networks that filter, rate-limit or bill ICMP. A node cut off the
	// network is then found by memberlist's probes: a few hundred
	// milliseconds instead of about 110.
	NoEchoChecks bool
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
	// holds are the members held over their restart (restart.go).
	holds map[string]*restartHold
	// holdsEnded: Shutdown ended the holds; no new one is taken.
	holdsEnded bool

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
	for i, k := range cfg.ExtraSecretKeys {
		switch {
		case len(cfg.SecretKey) == 0:
			return nil, errors.New("membership: ExtraSecretKeys without a SecretKey")
		case len(k) != 16 && len(k) != 24 && len(k) != 32:
			return nil, fmt.Errorf("membership: ExtraSecretKeys[%d] is %d bytes, want 16, 24 or 32", i, len(k))
		}
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
		holds:     map[string]*restartHold{},
		leftGrace: cfg.LeftGrace,
	}
	if m.leftGrace <= 0 {
		m.leftGrace = DefaultLeftGrace
	}
	m.fast = newFastPath(cfg.NodeName, m.log, timing, !cfg.NoEchoChecks, m.notify)
	if cfg.NoEchoChecks {
		m.log.Info("Echo checks are off: a node cut off the network is found by memberlist's probes")
	}

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
		keyring, err := memberlist.NewKeyring(cloneKeys(cfg.ExtraSecretKeys), slices.Clone(cfg.SecretKey))
		if err != nil {
			m.fast.echo.close()
			return nil, fmt.Errorf("membership: keys: %w", err)
		}
		mc.Keyring = keyring
	}
	mc.Events = events{m}
	m.meta.Store(ptr(slices.Clone(cfg.Meta)))
	mc.Delegate = delegate{fp: m.fast, meta: &m.meta, departing: m.departing, restarting: m.restarting, state: cfg.JoinState}
	mc.Ping = delegate{fp: m.fast}
	mc.Logger = log.New(logWriter{cfg.Logger.WithName("memberlist")}, "", 0)
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{mc.BindAddr},
		BindPort:  port,
		Logger:    mc.Logger,
	})
	if err != nil {
		m.fast.echo.close()
		return nil, fmt.Errorf("membership: start member %q on %s: %w", cfg.NodeName, m.self, err)
	}
	mc.Transport = newTransport(nt, m.fast)

	list, err := memberlist.Create(mc)
	if err != nil {
		_ = mc.Transport.Shutdown()
		return nil, fmt.Errorf("membership: start member %q on %s: %w", cfg.NodeName, m.self, err)
	}
	m.list = list
	m.fast.list.Store(list)
	m.log.Info("Member started", "node", cfg.NodeName, "address", m.self.String(), "encrypted", len(cfg.SecretKey) > 0, "extraKeys", len(cfg.ExtraSecretKeys))
	if len(cfg.SecretKey) == 0 {
		m.log.Info("WARNING: membership gossip is neither encrypted nor authenticated; set a secret key so that no one on the network can join or forge member state")
	}
	return m, nil
}

func cloneKeys(keys [][]byte) [][]byte {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = slices.Clone(k)
	}
	return out
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

// Healthy tells whether this member's own recent probes went through
// (memberlist's local health score, Lifeguard's, is 0). A member whose
// probes of several others fail unexplained is likely the one cut off:
// what it concludes about the others is suspect.
func (m *Membership) Healthy() bool { return m.fast.healthy() }

// Marked tells whether this member holds kernel-level evidence (a mark)
// that some member is down: its own connect was refused, or its SYNs went
// unanswered while it was healthy.
func (m *Membership) Marked() bool { return m.fast.anyMarked() }

// KernelUp tells whether member name's node is up and on the network as
// far as this member can tell: its kernel answered this member's echo
// within the last few tens of milliseconds (see echo.go), and no connect
// to its memberlist port was refused (which would say that its process is
// gone). A member memberlist lost, or one marked down on unanswered SYNs,
// whose kernel is up is cut off from the gossip (a firewall on the
// memberlist port, say) or hung, not dead: it may still answer on the
// LAN. False when this member does not ping that node: it is not among
// those it watches, shares this member's address, or the echo checks are
// off.
func (m *Membership) KernelUp(name string) bool { return m.fast.kernelUp(name) }

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
	return m.leave(encodeLeaving(m.fast.self), timeout)
}

// leave sends notice (a leaving or a restarting one), then leaves
// memberlist.
func (m *Membership) leave(notice []byte, timeout time.Duration) error {
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
	m.fast.tell(notice, "")
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
	m.endHolds()
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
	if h := e.m.holds[n.Name]; h != nil {
		h.rejoined = true
	}
	e.m.metaMu.Unlock()
	if e.m.fast.joined(n) && n.Name != e.m.fast.self && e.m.fast.syncsWithReturning(n.Name) {
		// A member back from the dead, typically across a healed
		// partition: it may still be dead in the views of the members
		// that have not heard from it, and until it hears so itself
		// it does not refute (RejoinInterval or a push/pull later).
		// A full state exchange now tells it, both ways. A few members
		// do it, not all (see syncsWithReturning).
		go e.m.syncWith(n.Address())
	}
	e.m.log.Info("Member joined", "member", n.Name, "address", n.Address())
	e.m.notify()
}

// NotifyLeave is called both for a member that left and one declared dead.
func (e events) NotifyLeave(n *memberlist.Node) {
	e.m.fast.gone(n)
	e.m.endHoldIfBack(n.Name)
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
