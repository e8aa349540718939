package membership

import (
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Echo checks: the watched members' nodes are pinged (ICMP echo) every
// echoInterval. A node's kernel answers an echo itself, whatever its
// processes are doing, so a node that stops answering for echoSilence is
// one whose kernel is down or off the network, or whose path is cut: that
// is the cue for the fast path's own check (kernelDial: its SYNs too must
// go unanswered for minSilence, with this member's health at 0), which
// marks and shares as a probe's would. A node cut off the LAN is then
// found about 50 ms after the cut plus the check's 60 ms, instead of when
// memberlist next probes it plus its ping timeout plus the check.
//
// Silence is evidence only from a node that has answered before (ICMP may
// be filtered), and not when every watched node falls silent at once with
// two or more watched: that is this node cut off, or its own ICMP, not
// theirs. After a check, a node counts again only once it answers again,
// so a node whose echoes are filtered from some moment on costs one check.
// Members on this member's own address are not pinged: the answer would
// say nothing about them (tests run many members on one address).
const (
	echoInterval = 10 * time.Millisecond
	echoSilence  = 50 * time.Millisecond
	// kernelUpWithin is how recent an answer must be for a node to count
	// as up (Membership.KernelUp): shorter than the silence after which
	// the fast path checks it, so that a node whose echoes stopped, and
	// which is marked on that, never counts as up.
	kernelUpWithin = echoSilence - echoInterval
)

// echoer pings the watched members' nodes and asks for a check when one
// falls silent.
type echoer struct {
	fp  *fastPath
	log logr.Logger
	id  int

	mu      sync.Mutex
	closed  bool
	cancel  context.CancelFunc
	conns   map[bool]*icmp.PacketConn // by "is IPv4"; nil when it could not be opened
	tried   map[bool]bool
	targets map[string]*echoTarget // by member name
}

// echoTarget is a watched member's node.
type echoTarget struct {
	addr netip.Addr
	// answered is when its node last answered an echo; zero until it
	// does, and again after a check, until it answers again.
	answered time.Time
	checking bool
	// lingerUntil is set when the member stops being watched (memberlist
	// dropped it, say): its node is still pinged until then, but not
	// judged. Whether its kernel is up is what tells a cut in the gossip
	// from a death (KernelUp), and that is asked right when memberlist
	// drops a member.
	lingerUntil time.Time
}

// echoLinger is how long a member no longer watched is still pinged.
const echoLinger = 30 * time.Second

// newEchoer starts pinging, unless on is false: then the echoer is closed
// from the start and update and close do nothing.
func newEchoer(fp *fastPath, log logr.Logger, on bool) *echoer {
	ctx, cancel := context.WithCancel(context.Background())
	e := &echoer{fp: fp, log: log, id: rand.N(0xffff) + 1, cancel: cancel,
		conns: map[bool]*icmp.PacketConn{}, tried: map[bool]bool{}, targets: map[string]*echoTarget{}}
	if !on {
		e.closed = true
		cancel()
		return e
	}
	go e.run(ctx)
	return e
}

// update pings exactly the members of want that are not on self's
// address. It does not block (memberlist's events call it).
func (e *echoer) update(self netip.Addr, want map[string]netip.AddrPort) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	now := time.Now()
	for name, t := range e.targets {
		ap, ok := want[name]
		switch {
		case ok && ap.Addr() == t.addr && ap.Addr() != self:
			t.lingerUntil = time.Time{} // watched (again)
		case !ok && t.addr != self:
			if t.lingerUntil.IsZero() {
				t.lingerUntil = now.Add(echoLinger)
			}
		default: // on another address now, or on this member's
			delete(e.targets, name)
		}
	}
	for name, ap := range want {
		if e.targets[name] == nil && ap.Addr() != self && ap.Addr().IsValid() {
			e.targets[name] = &echoTarget{addr: ap.Addr()}
		}
	}
}

// consult pings member name's node at addr from now on, for echoLinger
// and unjudged, unless it is pinged already or on self's address: a
// member this one does not watch, which a check is about (another
// member's hint, a failed probe) or which memberlist dropped. In a large
// cluster most members watch a given one from afar; when it is lost they
// take its addresses over too, and must tell a cut in the gossip from a
// death as its watchers do (KernelUp). The first echo goes at once: the
// answer is in long before the check's dial ends.
func (e *echoer) consult(name string, addr, self netip.Addr) {
	e.mu.Lock()
	if e.closed || e.targets[name] != nil || !addr.IsValid() || addr == self {
		e.mu.Unlock()
		return
	}
	e.targets[name] = &echoTarget{addr: addr, lingerUntil: time.Now().Add(echoLinger)}
	e.mu.Unlock()
	e.send(addr, 0)
}

// prune drops the lingering targets whose time is up.
func (e *echoer) prune(now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for name, t := range e.targets {
		if !t.lingerUntil.IsZero() && now.After(t.lingerUntil) {
			delete(e.targets, name)
		}
	}
}

// close stops the echoes.
func (e *echoer) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	e.closed = true
	e.cancel()
	for _, c := range e.conns {
		if c != nil {
			_ = c.Close()
		}
	}
}

func (e *echoer) run(ctx context.Context) {
	tick := time.NewTicker(echoInterval)
	defer tick.Stop()
	seq := 0
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			seq = (seq + 1) & 0xffff
			for _, a := range e.addrs() {
				e.send(a, seq)
			}
			e.judge(now)
			if seq%100 == 0 {
				e.prune(now)
			}
		}
	}
}

// addrs are the nodes to ping now.
func (e *echoer) addrs() []netip.Addr {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]netip.Addr, 0, len(e.targets))
	for _, t := range e.targets {
		out = append(out, t.addr)
	}
	return out
}

// conn returns the socket for a's family, opening it (and its reader) on
// first use; nil when it cannot be opened (no CAP_NET_RAW): the echo
// checks are then off and the probes do as before.
func (e *echoer) conn(a netip.Addr) *icmp.PacketConn {
	v4 := a.Is4()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || e.tried[v4] {
		return e.conns[v4]
	}
	e.tried[v4] = true
	network, bind := "ip6:ipv6-icmp", "::"
	if v4 {
		network, bind = "ip4:icmp", "0.0.0.0"
	}
	c, err := icmp.ListenPacket(network, bind)
	if err != nil {
		e.log.Info("Echo checks off: cannot open a raw ICMP socket; a node cut off the network is found by the probes alone", "network", network, "error", err.Error())
		return nil
	}
	e.conns[v4] = c
	go e.read(c, v4)
	return c
}

func (e *echoer) send(a netip.Addr, seq int) {
	c := e.conn(a)
	if c == nil {
		return
	}
	var typ icmp.Type = ipv6.ICMPTypeEchoRequest
	if a.Is4() {
		typ = ipv4.ICMPTypeEcho
	}
	b, err := (&icmp.Message{Type: typ, Body: &icmp.Echo{ID: e.id, Seq: seq}}).Marshal(nil)
	if err != nil {
		return
	}
	// A send that fails (this node's link is down) is silence too.
	_, _ = c.WriteTo(b, &net.IPAddr{IP: a.AsSlice()})
}

// read records the answers to this echoer's echoes until c is closed.
func (e *echoer) read(c *icmp.PacketConn, v4 bool) {
	proto, reply := 58, icmp.Type(ipv6.ICMPTypeEchoReply) // IANA ICMPv6
	if v4 {
		proto, reply = 1, ipv4.ICMPTypeEchoReply
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return // closed
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || m.Type != reply {
			continue
		}
		if echo, ok := m.Body.(*icmp.Echo); !ok || echo.ID != e.id {
			continue
		}
		ip, ok := from.(*net.IPAddr)
		if !ok {
			continue
		}
		a, ok := netip.AddrFromSlice(ip.IP)
		if !ok {
			continue
		}
		a = a.Unmap()
		now := time.Now()
		e.mu.Lock()
		for _, t := range e.targets {
			if t.addr == a && !t.checking {
				t.answered = now
			}
		}
		e.mu.Unlock()
	}
}

// answeredWithin tells whether member name's node answered an echo within
// d before now (false for a node not pinged: not watched, on this
// member's address, or with the echo checks off).
func (e *echoer) answeredWithin(name string, d time.Duration, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.targets[name]
	return t != nil && !t.answered.IsZero() && now.Sub(t.answered) < d
}

// judge asks for a check of each node silent for echoSilence.
func (e *echoer) judge(now time.Time) {
	e.mu.Lock()
	var silent []string
	answering := 0
	for name, t := range e.targets {
		if t.answered.IsZero() || t.checking || !t.lingerUntil.IsZero() {
			continue
		}
		answering++
		if now.Sub(t.answered) >= echoSilence {
			silent = append(silent, name)
		}
	}
	if len(silent) == 0 || (answering >= 2 && len(silent) == answering) {
		e.mu.Unlock()
		return
	}
	for _, name := range silent {
		e.targets[name].checking = true
	}
	e.mu.Unlock()
	for _, name := range silent {
		go func() {
			_ = e.fp.check(name, "echo silence", true)
			e.mu.Lock()
			if t := e.targets[name]; t != nil {
				t.checking, t.answered = false, time.Time{}
			}
			e.mu.Unlock()
		}()
	}
}
