package membership

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/hashicorp/memberlist"
)

// The fast path: kernel-level evidence that a member is down, taken while
// memberlist's own failure detector is still making up its mind. See the
// package documentation for the rules and why a slow but live member
// cannot produce such evidence.

const (
	// markTTL bounds a mark that memberlist never confirms. memberlist
	// declares a silent member dead within a few seconds (see Timing);
	// a mark that outlives this contradicts it (the member answers
	// memberlist's UDP probes, or others refute for it), and memberlist
	// wins: the member is listed again.
	markTTL = 10 * time.Second
	// markHoldoff is how long after such an expired mark the fast path
	// ignores new evidence about that member, so that a member whose
	// evidence is wrong in some way not foreseen here flaps at most once.
	markHoldoff = time.Minute
	// hintPrefix starts the user message "this member looks down".
	hintPrefix = "barelb/down\x00"
	// leavingPrefix starts the user message "this member is leaving",
	// followed by its name.
	leavingPrefix = "barelb/leaving\x00"
)

type verdict int

const (
	verdictUnknown    verdict = iota
	verdictAnswered           // a connection was established
	verdictRefused            // the node's kernel reset the connection
	verdictUnanswered         // no SYN-ACK within the silence measured
)

// dialResult is what kernelDial saw.
type dialResult struct {
	verdict verdict
	conn    net.Conn      // when answered
	silence time.Duration // how long the SYNs went unanswered, at least
	err     error
}

// timeoutError is the dial error for SYNs that went unanswered.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout: SYNs unanswered" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// mark records that a member is down on kernel-level evidence.
type mark struct {
	since time.Time
	why   string
	// refused: a connect to the member's port was refused, so nothing
	// listens there; its process is gone, whatever its kernel does.
	refused bool
	timer   *time.Timer // expires the mark after markTTL
}

// fastPath holds the marks and gathers and shares the evidence.
type fastPath struct {
	self       string
	log        logr.Logger
	notify     func()
	minSilence time.Duration // unanswered SYNs: the least silence that counts
	window     time.Duration // a verification dial's window
	tcpTimeout time.Duration // memberlist's stream dials use this timeout
	list       atomic.Pointer[memberlist.Memberlist]
	queue      *memberlist.TransmitLimitedQueue

	mu sync.Mutex
	// addrs are the listed members' addresses (this one's too), kept
	// from memberlist's events: the *Node values Memberlist.Members
	// returns are written by memberlist while we read them.
	addrs map[string]netip.AddrPort
	// wasGone are the members memberlist dropped once, at the address
	// they had: a notice about one may come just after its drop.
	wasGone   map[string]netip.AddrPort
	marks     map[string]*mark
	holdoff   map[string]time.Time // no new mark before
	verifying map[string]bool      // a hint's verification is running
	// watch holds the watch streams (watch.go), to the members
	// watchedBy names, and echo pings their nodes (echo.go).
	watch *watches
	echo  *echoer
}

func newFastPath(self string, log logr.Logger, timing Timing, echoChecks bool, notify func()) *fastPath {
	fp := &fastPath{
		self:   self,
		log:    log,
		notify: notify,
		// A LAN answers a SYN in well under a millisecond, a loaded
		// kernel in a few: 50 ms of silence from both SYNs is no hiccup.
		minSilence: timing.ProbeTimeout / 2,
		// A verification follows a hint, whose sender saw its SYNs go
		// unanswered for at least minSilence (normally the whole rest of
		// its probe interval): the verifier's own minSilence is a
		// second, independent observation.
		window:     timing.ProbeTimeout/2 + timing.ProbeTimeout/8,
		tcpTimeout: timing.TCPTimeout,
		addrs:      make(map[string]netip.AddrPort),
		wasGone:    make(map[string]netip.AddrPort),
		marks:      make(map[string]*mark),
		holdoff:    make(map[string]time.Time),
		verifying:  make(map[string]bool),
	}
	fp.watch = newWatches(fp, log, timing.TCPTimeout)
	fp.echo = newEchoer(fp, log, echoChecks)
	fp.queue = &memberlist.TransmitLimitedQueue{
		NumNodes: func() int {
			if l := fp.list.Load(); l != nil {
				return l.NumMembers()
			}
			return 1
		},
		RetransmitMult: 3,
	}
	return fp
}

// marked tells whether name is marked down.
func (fp *fastPath) marked(name string) bool {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	return fp.marks[name] != nil
}

// kernelUp tells whether name's node answered an echo within the last
// kernelUpWithin and no connect to name was refused since it was marked.
func (fp *fastPath) kernelUp(name string) bool {
	fp.mu.Lock()
	refused := fp.marks[name] != nil && fp.marks[name].refused
	fp.mu.Unlock()
	return !refused && fp.echo.answeredWithin(name, kernelUpWithin, time.Now())
}

// anyMarked tells whether some member is marked down.
func (fp *fastPath) anyMarked() bool {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	return len(fp.marks) > 0
}

// filter drops the marked names.
func (fp *fastPath) filter(names []string) []string {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	if len(fp.marks) == 0 {
		return names
	}
	out := names[:0]
	for _, n := range names {
		if fp.marks[n] == nil {
			out = append(out, n)
		}
	}
	return out
}

// member returns the address of a listed member (alive or suspect) other
// than this one.
func (fp *fastPath) member(name string) (netip.AddrPort, bool) {
	if name == fp.self {
		return netip.AddrPort{}, false
	}
	fp.mu.Lock()
	defer fp.mu.Unlock()
	ap, ok := fp.addrs[name]
	return ap, ok
}

// lastAddress returns the address of member name, listed or dropped
// since it was last listed, other than this one.
func (fp *fastPath) lastAddress(name string) (netip.AddrPort, bool) {
	if name == fp.self {
		return netip.AddrPort{}, false
	}
	fp.mu.Lock()
	defer fp.mu.Unlock()
	if ap, ok := fp.addrs[name]; ok {
		return ap, true
	}
	ap := fp.wasGone[name]
	return ap, ap.IsValid()
}

// addresses returns the listed members' addresses, this one's included.
func (fp *fastPath) addresses() map[string]netip.AddrPort {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	return maps.Clone(fp.addrs)
}

// joined records a member memberlist lists (again), possibly at a new
// address, and drops its mark: memberlist decided. It tells whether the
// member had been dropped before (left or declared dead). Called from
// memberlist's events, with its state lock held, which makes reading n
// safe.
func (fp *fastPath) joined(n *memberlist.Node) (again bool) {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	_, again = fp.wasGone[n.Name]
	delete(fp.wasGone, n.Name)
	if a, ok := netip.AddrFromSlice(n.Addr); ok {
		fp.addrs[n.Name] = netip.AddrPortFrom(a.Unmap(), n.Port)
	}
	marked := fp.forgetLocked(n.Name)
	fp.watchedChangedLocked()
	if again || marked {
		fp.watch.back(n.Name)
	}
	return again
}

// returningSyncs is how many members, besides those that watch it, are
// expected to exchange the full state with a member back from the dead.
const returningSyncs = 3

// syncsWithReturning tells whether this member exchanges the full state
// with member name, which memberlist lists again after dropping it: when
// it watches name, or else with probability returningSyncs in the number
// of members. Every member doing it made a storm: when a partition of a
// large cluster heals, each member sees half the others come back, and
// each of those got a push/pull of the whole state from everyone at
// once (250 members in one process ran out of file descriptors with
// 10,000 such exchanges waiting). A few exchanges tell the returning
// member that it was declared dead, and gossip does the rest.
func (fp *fastPath) syncsWithReturning(name string) bool {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	if _, ok := watchedBy(fp.self, fp.addrs)[name]; ok {
		return true
	}
	return rand.IntN(max(len(fp.addrs), 1)) < returningSyncs
}

// gone forgets a member memberlist no longer lists (left or declared
// dead), mark included. Called like joined.
func (fp *fastPath) gone(n *memberlist.Node) {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	if ap, ok := fp.addrs[n.Name]; ok {
		fp.echo.consult(n.Name, ap.Addr(), fp.addrs[fp.self].Addr())
		fp.wasGone[n.Name] = ap
	} else if _, ok := fp.wasGone[n.Name]; !ok {
		fp.wasGone[n.Name] = netip.AddrPort{}
	}
	delete(fp.addrs, n.Name)
	fp.forgetLocked(n.Name)
	fp.watchedChangedLocked()
}

// watchedChangedLocked points the watch streams and the echoes at the
// members watchedBy names now; fp.mu held.
func (fp *fastPath) watchedChangedLocked() {
	want := watchedBy(fp.self, fp.addrs)
	fp.watch.update(want)
	fp.echo.update(fp.addrs[fp.self].Addr(), want)
}

// healthy is memberlist's local health score being 0: this member's own
// recent probes did not fail unexplained (Lifeguard), so it is not the one
// cut off or starved.
func (fp *fastPath) healthy() bool {
	l := fp.list.Load()
	return l != nil && l.GetHealthScore() == 0
}

// observe acts on a dial to member name at ap. healthy is this member's
// health at the start of the dial; share broadcasts a new mark.
func (fp *fastPath) observe(name string, ap netip.AddrPort, r dialResult, healthy bool, source string, share bool) {
	switch r.verdict {
	case verdictAnswered:
		fp.clear(name, "answered a TCP connect")
	case verdictRefused:
		fp.markRefused(name, ap, "connection refused (nothing listens)", source, share)
	case verdictUnanswered:
		if !healthy {
			fp.log.V(1).Info("Ignoring unanswered SYNs: this member's own health is degraded", "member", name, "silence", r.silence.String())
			return
		}
		fp.mark(name, ap, fmt.Sprintf("%d SYNs unanswered for %v", synsPerDial, r.silence.Round(time.Millisecond)), source, share)
	}
}

// mark marks name down if it is a listed member at ap; markRefused does
// so on a refused connect.
func (fp *fastPath) mark(name string, ap netip.AddrPort, why, source string, share bool) {
	fp.markWith(name, ap, why, false, source, share)
}

func (fp *fastPath) markRefused(name string, ap netip.AddrPort, why, source string, share bool) {
	fp.markWith(name, ap, why, true, source, share)
}

func (fp *fastPath) markWith(name string, ap netip.AddrPort, why string, refused bool, source string, share bool) {
	if cur, ok := fp.member(name); !ok || cur != ap {
		return // not a member, or the evidence is about an old address
	}
	fp.mu.Lock()
	if fp.marks[name] != nil {
		fp.mu.Unlock()
		return
	}
	if until, ok := fp.holdoff[name]; ok {
		if time.Now().Before(until) {
			fp.mu.Unlock()
			fp.log.V(1).Info("Ignoring kernel-level evidence: an earlier mark was not confirmed", "member", name, "evidence", why)
			return
		}
		delete(fp.holdoff, name)
	}
	mk := &mark{since: time.Now(), why: why, refused: refused}
	mk.timer = time.AfterFunc(markTTL, func() { fp.expire(name, mk) })
	fp.marks[name] = mk
	fp.mu.Unlock()
	fp.log.Info("Member down (kernel-level evidence)", "member", name, "address", ap.String(), "evidence", why, "source", source)
	fp.notify()
	if share {
		fp.share(name)
	}
}

// clear removes name's mark, if any.
func (fp *fastPath) clear(name, why string) {
	fp.mu.Lock()
	mk := fp.marks[name]
	if mk != nil {
		mk.timer.Stop()
		delete(fp.marks, name)
	}
	fp.mu.Unlock()
	if mk != nil {
		fp.watch.back(name)
		fp.log.Info("Member mark cleared", "member", name, "reason", why, "markedFor", time.Since(mk.since).Round(time.Millisecond).String())
		fp.notify()
	}
}

// forgetLocked removes name's mark, if any, and tells whether there was
// one; fp.mu held.
func (fp *fastPath) forgetLocked(name string) bool {
	mk := fp.marks[name]
	if mk != nil {
		mk.timer.Stop()
		delete(fp.marks, name)
	}
	return mk != nil
}

func (fp *fastPath) expire(name string, mk *mark) {
	fp.mu.Lock()
	if fp.marks[name] != mk {
		fp.mu.Unlock()
		return
	}
	delete(fp.marks, name)
	fp.holdoff[name] = time.Now().Add(markHoldoff)
	fp.mu.Unlock()
	fp.log.Info("WARNING: memberlist did not confirm a member marked down; listing it again and ignoring kernel-level evidence about it for a while",
		"member", name, "evidence", mk.why, "markedFor", markTTL.String(), "holdoff", markHoldoff.String())
	fp.notify()
}

// share tells the other members that name looks down: at once to each
// (UDP, best effort) and piggybacked on the next gossip rounds. Each
// receiver checks for itself (verify) before marking.
func (fp *fastPath) share(name string) {
	l := fp.list.Load()
	if l == nil {
		return
	}
	fp.tell(encodeHint(name, fp.self), name)
}

// tell sends a user message about member name (its own leaving notice
// when name is empty) to every other member at once (UDP, best effort)
// and piggybacks it on the next gossip rounds; a newer one about the same
// member replaces it in the queue.
func (fp *fastPath) tell(msg []byte, name string) {
	l := fp.list.Load()
	if l == nil {
		return
	}
	fp.queue.QueueBroadcast(hint{name: name, msg: msg})
	for to, ap := range fp.addresses() {
		if to == fp.self || to == name || fp.marked(to) {
			continue
		}
		n := &memberlist.Node{Name: to, Addr: ap.Addr().AsSlice(), Port: ap.Port()}
		if err := l.SendBestEffort(n, msg); err != nil {
			fp.log.V(1).Info("Sending a user message failed", "to", to, "error", err.Error())
		}
	}
}

// encodeLeaving is a member's notice that it is leaving.
func encodeLeaving(self string) []byte { return []byte(leavingPrefix + self) }

func decodeLeaving(b []byte) (name string, ok bool) {
	rest, ok := bytes.CutPrefix(b, []byte(leavingPrefix))
	if !ok || len(rest) == 0 {
		return "", false
	}
	return string(rest), true
}

// verify checks a hint with a dial of this member's own.
func (fp *fastPath) verify(name, from string) { _ = fp.check(name, "hint from "+from, false) }

// check dials member name and acts on what the kernels say (observe),
// and returns the verdict; a check already running for name, or a mark,
// makes it a no-op (verdictUnknown).
func (fp *fastPath) check(name, source string, share bool) verdict {
	ap, ok := fp.member(name)
	if !ok {
		return verdictUnknown
	}
	fp.mu.Lock()
	if fp.marks[name] != nil || fp.verifying[name] {
		fp.mu.Unlock()
		return verdictUnknown
	}
	fp.verifying[name] = true
	fp.mu.Unlock()
	fp.consultEcho(name, ap)
	defer func() {
		fp.mu.Lock()
		delete(fp.verifying, name)
		fp.mu.Unlock()
	}()
	healthy := fp.healthy()
	r := kernelDial(ap, fp.window, fp.minSilence)
	if r.conn != nil {
		_ = r.conn.Close()
		fp.log.V(1).Info("Member answered a check", "member", name, "source", source)
	}
	fp.observe(name, ap, r, healthy, source, share)
	return r.verdict
}

// consultEcho starts pinging member name's node, at ap, before a dial
// whose unanswered SYNs may mark it down: whether its kernel answers (a
// node cut from the gossip, not dead) is then known by the time the dial
// ends, also for a member this one does not watch.
func (fp *fastPath) consultEcho(name string, ap netip.AddrPort) {
	fp.mu.Lock()
	self := fp.addrs[fp.self].Addr()
	fp.mu.Unlock()
	fp.echo.consult(name, ap.Addr(), self)
}

func encodeHint(name, from string) []byte {
	return []byte(hintPrefix + name + "\x00" + from)
}

func decodeHint(b []byte) (name, from string, ok bool) {
	rest, ok := bytes.CutPrefix(b, []byte(hintPrefix))
	if !ok {
		return "", "", false
	}
	n, f, ok := bytes.Cut(rest, []byte{0})
	if !ok || len(n) == 0 {
		return "", "", false
	}
	return string(n), string(f), true
}

// hint is a queued down hint; a newer one about the same member replaces it.
type hint struct {
	name string
	msg  []byte
}

func (h hint) Invalidates(other memberlist.Broadcast) bool {
	o, ok := other.(hint)
	return ok && o.name == h.name
}
func (h hint) Message() []byte { return h.msg }
func (h hint) Finished()       {}

// delegate receives hints, hands out queued ones, clears marks on acked
// pings, and hands out this member's metadata.
type delegate struct {
	fp   *fastPath
	meta *atomic.Pointer[[]byte] // this member's metadata
	// departing records a member's leaving notice.
	departing func(name string)
	// restarting records a member's restarting notice (restart.go).
	restarting func(name string, hold time.Duration)
	// state is exchanged on joins only (see JoinState); nil for none.
	state JoinState
}

func (d delegate) NodeMeta(limit int) []byte {
	meta := *d.meta.Load()
	if len(meta) > limit {
		return nil // New and SetMeta checked it against memberlist's limit
	}
	return meta
}

// NotifyMsg must not block: memberlist's packet handling waits for it.
func (d delegate) NotifyMsg(b []byte) {
	if name, from, ok := decodeHint(b); ok {
		go d.fp.verify(name, from)
	}
	if name, hold, ok := decodeRestarting(b); ok && d.restarting != nil && name != d.fp.self {
		// At once, not in a goroutine: memberlist hands the member's
		// leave to NotifyLeave right after this notice, and the plan
		// it wakes must find the member held. A hold taken a moment
		// later let another node take the addresses over and hand
		// them back (a move each way: TestUpgrade in CI).
		d.restarting(name, hold)
	}
	if name, ok := decodeLeaving(b); ok && d.departing != nil && name != d.fp.self {
		d.departing(name)
	}
}

func (d delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.fp.queue.GetBroadcasts(overhead, limit)
}
func (d delegate) LocalState(join bool) []byte {
	if !join || d.state == nil {
		return nil
	}
	return d.state.LocalJoinState()
}
func (d delegate) MergeRemoteState(b []byte, join bool) {
	if join && d.state != nil && len(b) > 0 {
		d.state.MergeJoinState(b)
	}
}
func (delegate) AckPayload() []byte { return nil }
func (d delegate) NotifyPingComplete(n *memberlist.Node, _ time.Duration, _ []byte) {
	d.fp.clear(n.Name, "acked a ping")
}

// transport is memberlist's own NetTransport with the TCP dials watched:
// the TCP fallback of a probe (a dial with less than TCPTimeout, after the
// UDP ping got no ack in ProbeTimeout) goes through kernelDial and its
// verdict is evidence; a refused stream dial (push/pull, Join) is
// evidence too. Its inbound streams are sorted: watch streams (watch.go)
// are held, memberlist gets the rest.
type transport struct {
	*memberlist.NetTransport
	fp      *fastPath
	streams chan net.Conn
	done    chan struct{}
	stop    sync.Once
}

func newTransport(nt *memberlist.NetTransport, fp *fastPath) *transport {
	t := &transport{NetTransport: nt, fp: fp, streams: make(chan net.Conn), done: make(chan struct{})}
	go t.sortStreams()
	return t
}

// StreamCh is memberlist's inbound streams, watch streams left out.
func (t *transport) StreamCh() <-chan net.Conn { return t.streams }

func (t *transport) sortStreams() {
	for {
		select {
		case <-t.done:
			return
		case c := <-t.NetTransport.StreamCh():
			go t.sortStream(c)
		}
	}
}

// sortStream reads a stream's first byte: a watch stream is held, any
// other goes to memberlist with the byte given back.
func (t *transport) sortStream(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(t.fp.tcpTimeout))
	var first [1]byte
	if _, err := io.ReadFull(c, first[:]); err != nil {
		_ = c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	if first[0] == watchMagic {
		t.fp.watch.accept(c)
		return
	}
	select {
	case t.streams <- &peekedConn{Conn: c, first: first[:]}:
	case <-t.done:
		_ = c.Close()
	}
}

// Shutdown closes the watch streams too. NetTransport's listener may be
// handing over a stream while it stops: sortStreams takes it until
// NetTransport has stopped.
func (t *transport) Shutdown() error {
	err := t.NetTransport.Shutdown()
	t.stop.Do(func() {
		close(t.done)
		t.fp.watch.close()
		t.fp.echo.close()
	})
	return err
}

func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(a.Addr)
	if err != nil || a.Name == "" {
		return t.NetTransport.DialAddressTimeout(a, timeout)
	}
	if timeout >= t.fp.tcpTimeout {
		c, err := t.NetTransport.DialAddressTimeout(a, timeout)
		switch {
		case err == nil:
			t.fp.observe(a.Name, ap, dialResult{verdict: verdictAnswered}, false, "stream", false)
		case errors.Is(err, syscall.ECONNREFUSED):
			t.fp.observe(a.Name, ap, dialResult{verdict: verdictRefused}, false, "stream", true)
		}
		return c, err
	}
	// memberlist's own probe can mark the member down too: consult its
	// node's echoes first, as a check does. Without it a member that
	// does not watch a node cut from the gossip took the node's
	// addresses over unprobed when its own probe found the node first.
	t.fp.consultEcho(a.Name, ap)
	healthy := t.fp.healthy()
	r := kernelDial(ap, timeout, t.fp.minSilence)
	t.fp.observe(a.Name, ap, r, healthy, "probe", true)
	if r.verdict == verdictAnswered {
		return r.conn, nil
	}
	return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(ap), Err: r.err}
}
