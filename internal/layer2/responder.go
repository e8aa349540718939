package layer2

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// gratuitousSchedule is when, after starting to announce an address, the
// responder repeats its gratuitous ARP and unsolicited advertisement: the
// first tells neighbours at once; the repeats cover a lost frame and a
// switch that learnt the old port a moment late.
var gratuitousSchedule = []time.Duration{0, 200 * time.Millisecond, time.Second}

// Stats count what a responder saw and sent.
type Stats struct {
	ARPRequests, ARPAnswers, NDPSolicitations, NDPAnswers, Gratuitous atomic.Uint64
	// Conflicts counts addresses found in use by another host on the link.
	Conflicts atomic.Uint64
}

// Options change what a Responder does beyond answering.
type Options struct {
	// OnConflict, when set, receives the address conflicts the responder
	// finds or sees (see ConflictKind). It is called from the responder's
	// goroutines, never with a lock held, and must not block for long.
	OnConflict func(Conflict)
	// OnProbed, when set, is told when an address announced with a probe
	// starts being answered (the probe found it free). Called like
	// OnConflict.
	OnProbed func(netip.Addr)
	// GratuitousInterval, when positive, repeats the gratuitous
	// announcement of every answered address this often, to keep
	// switches' MAC tables and neighbours' entries fresh. 0 is off.
	GratuitousInterval time.Duration
	// ReprobeInterval is the first wait before probing an address in
	// conflict again (DefaultReprobeInterval when 0); it doubles up to
	// three times that.
	ReprobeInterval time.Duration
	// Speaker, when set, names the node of another barelb speaker that
	// mac belongs to (ok false for any other host). Such a speaker's
	// claim on an address is no conflict: two speakers answer for a
	// moment during a hand-over, or while a healed partition settles,
	// and the election decides. It neither stops a probe nor is
	// defended, counted or reported; it is logged. Called from the
	// responder's goroutines for claims only, so it may take a lock.
	Speaker func(mac net.HardwareAddr) (node string, ok bool)
	// OnPeerClaim, when set, is told every claim another barelb speaker
	// (see Speaker) makes on an address the responder owns, whatever its
	// state: a gratuitous announcement, an answer to a probe. Two speakers
	// answering for one address outside a hand-over means their views of
	// the cluster differ (the gossip between them is cut); the caller
	// decides which one keeps it (Yield, Reannounce). Called like
	// OnConflict.
	OnPeerClaim func(PeerClaim)
}

// PeerClaim is another barelb speaker's claim on an owned address.
type PeerClaim struct {
	Address   netip.Addr
	Interface string
	MAC       net.HardwareAddr
	// Node is the other speaker's node.
	Node string
	// Answering: this responder answers for the address (it is not
	// probing, yielded or in conflict).
	Answering bool
}

// AnnounceOptions change how Announce starts announcing an address.
type AnnounceOptions struct {
	// Probe checks that no other host on the link uses the address before
	// answering for it (about 250 ms); an address found in use is not
	// answered but probed again from time to time, and OnConflict is told.
	// Leave it off when taking an address over from another node: the
	// previous announcer may still answer, and failover must not wait.
	Probe bool
}

// addrState is where an owned address stands.
type addrState uint8

const (
	stateAnswering addrState = iota
	stateProbing             // the first probe runs: not answered yet
	stateConflict            // another host uses it: not answered, probed again later
	// stateYielded: another speaker keeps it (Yield); not answered,
	// probed back to back, answered again once nobody claims it.
	stateYielded
)

// owned is an address the responder was told to announce, and where its
// timed work stands (see schedule.go). Its fields are guarded by the
// responder's mu. A speaker may own 10,000 of them: it is kept to 48
// bytes, what only probing needs hanging off probe.
type owned struct {
	ip netip.Addr
	// gen is the generation of the address's pending task.
	gen   uint32
	state addrState
	// burst is how many gratuitous announcements of the current burst
	// are sent or scheduled.
	burst uint8
	// probesSent counts the probes of the current round.
	probesSent uint8
	// defended is when the responder last defended the address, as time
	// since the responder started; 0 is never.
	defended time.Duration
	// probe is the state of probing, from the first probe on.
	probe *probeState
}

// probeState is what probing an address needs beyond owned.
type probeState struct {
	// claim is the MAC of a host that claimed the address during the
	// current round.
	claim net.HardwareAddr
	// claimBySpeaker: claim is another speaker's (only while yielded).
	claimBySpeaker bool
	// silentRounds counts the probe rounds in a row of a yielded address
	// that nobody answered.
	silentRounds uint8
	// reported is the other host last reported using the address; reprobe
	// is the wait before the next probe round while in conflict.
	reported net.HardwareAddr
	reprobe  time.Duration
}

// Responder answers ARP and NDP for owned addresses on one interface.
type Responder struct {
	ifi       *net.Interface
	log       logr.Logger
	opts      Options
	linkLocal netip.Addr
	arp       *arp.Client
	arpConn   *packet.Conn // arp's socket, read and written directly on the answer path
	ndp       *packet.Conn
	// Stats are updated as packets come and go.
	Stats Stats

	mu    sync.RWMutex
	owned map[netip.Addr]*owned
	// tasks are the addresses' timed work; runTasks is woken on wake when
	// a task is due sooner than it waits for.
	tasks taskHeap
	wake  chan struct{}
	// started is when the responder was made: owned times count from it.
	started time.Time
	// peerLogged is when another speaker's claim was last logged, as
	// time since started (one line per defendInterval for the whole
	// interface: a hand-over moves many addresses at once).
	peerLogged time.Duration
	// successor, once set (HandOver), takes every call: the interface
	// was re-created and this responder's sockets are dead.
	successor *Responder
	// leaving: the speaker stops (Leave).
	leaving bool
}

// NewResponder opens the packet sockets of interface ifi. The caller runs
// Run and eventually cancels its context, which closes them.
func NewResponder(ifi *net.Interface, log logr.Logger, opts Options) (*Responder, error) {
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("interface %s has no Ethernet address", ifi.Name)
	}
	if opts.ReprobeInterval <= 0 {
		opts.ReprobeInterval = DefaultReprobeInterval
	}
	r := &Responder{ifi: ifi, log: log.WithValues("interface", ifi.Name), opts: opts, owned: map[netip.Addr]*owned{}, wake: make(chan struct{}, 1), started: time.Now()}
	if addrs, err := ifi.Addrs(); err == nil {
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is6() && p.Addr().IsLinkLocalUnicast() {
				r.linkLocal = p.Addr()
			}
		}
	}
	var err error
	if r.arpConn, err = packet.Listen(ifi, packet.Raw, etherTypeARP, nil); err != nil {
		return nil, fmt.Errorf("opening ARP socket on %s: %w", ifi.Name, err)
	}
	if r.arp, err = arp.New(ifi, r.arpConn); err != nil {
		r.arpConn.Close()
		return nil, fmt.Errorf("opening ARP socket on %s: %w", ifi.Name, err)
	}
	if r.ndp, err = packet.Listen(ifi, packet.Raw, etherTypeIPv6, nil); err != nil {
		r.arp.Close()
		return nil, fmt.Errorf("opening IPv6 packet socket on %s: %w", ifi.Name, err)
	}
	// Only Neighbor Solicitations and Advertisements reach the program; a
	// packet socket sees the unicast ones sent to the address itself too,
	// which a socket bound to an IPv6 address misses when the address is
	// on no interface.
	filter, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: ethernetHeaderLen + 6, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: protocolICMPv6, SkipTrue: 4},
		bpf.LoadAbsolute{Off: ethernetHeaderLen + ipv6HeaderLen, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: icmpv6NeighborSolicitation, SkipTrue: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: icmpv6NeighborAdvertisement, SkipTrue: 1},
		bpf.RetConstant{Val: bpfKeep},
		bpf.RetConstant{Val: bpfDrop},
	})
	if err == nil {
		err = r.ndp.SetBPF(filter)
	}
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("filtering IPv6 packets on %s: %w", ifi.Name, err)
	}
	return r, nil
}

// Close closes the sockets.
func (r *Responder) Close() {
	r.arp.Close()
	r.ndp.Close()
}

// Run answers until ctx ends, then closes the sockets.
func (r *Responder) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); r.serveARP(ctx) }()
	go func() { defer wg.Done(); r.serveNDP(ctx) }()
	go func() { defer wg.Done(); r.runTasks(ctx) }()
	if r.opts.GratuitousInterval > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); r.periodic(ctx) }()
	}
	<-ctx.Done()
	r.Close()
	wg.Wait()
	return nil
}

// Owns tells whether the responder answers for ip: it was told to
// announce it, and it is not being probed or in conflict.
func (r *Responder) Owns(ip netip.Addr) bool {
	r.mu.RLock()
	if s := r.successor; s != nil {
		r.mu.RUnlock()
		return s.Owns(ip)
	}
	o := r.owned[ip]
	answering := o != nil && o.state == stateAnswering
	r.mu.RUnlock()
	return answering
}

// InConflict tells whether ip is not answered because another host uses
// it.
func (r *Responder) InConflict(ip netip.Addr) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if s := r.successor; s != nil {
		return s.InConflict(ip)
	}
	o := r.owned[ip.Unmap()]
	return o != nil && o.state == stateConflict
}

// Announce starts answering for ip and tells the LAN at once; with
// opts.Probe, only once a probe found the address free. The announcements
// and probes are sent while Run runs.
func (r *Responder) Announce(ip netip.Addr, opts AnnounceOptions) error {
	ip = ip.Unmap()
	r.mu.Lock()
	if s := r.successor; s != nil {
		r.mu.Unlock()
		return s.Announce(ip, opts)
	}
	if _, ok := r.owned[ip]; ok {
		r.mu.Unlock()
		return nil
	}
	o := &owned{ip: ip}
	if opts.Probe {
		o.state, o.probe = stateProbing, &probeState{reprobe: r.opts.ReprobeInterval}
	}
	r.owned[ip] = o
	r.mu.Unlock()
	if ip.Is6() {
		if err := r.membership(ip, joinGroup); err != nil {
			r.Withdraw(ip)
			return err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.owned[ip] != o {
		return nil // withdrawn meanwhile
	}
	if opts.Probe {
		r.startProbeLocked(o, time.Now())
	} else {
		r.startBurstLocked(o)
	}
	return nil
}

// Leave starts the responder's hand-over: its speaker stops, and the
// other speakers take its addresses over. It goes on answering requests,
// for neighbours that ask before a successor has announced, but it
// announces nothing any more, neither on schedule nor to defend an
// address, and it stops answering an address as soon as another host
// claims it: an announcement from a node about to go quiet would point
// the LAN back at it after its successor had moved the address, and
// break the connections that had moved with it (a rolling update of the
// speakers moves every address twice).
func (r *Responder) Leave() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.successor; s != nil {
		s.Leave()
		return
	}
	r.leaving = true
	for _, o := range r.owned {
		r.cancelLocked(o)
	}
}

// Leaving tells whether Leave was called.
func (r *Responder) Leaving() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if s := r.successor; s != nil {
		return s.Leaving()
	}
	return r.leaving
}

// Reannounce repeats the gratuitous announcements of an address the
// responder answers for: neighbours may have learnt another node's MAC for
// it meanwhile, as on both sides of a network partition that has healed.
func (r *Responder) Reannounce(ip netip.Addr) {
	ip = ip.Unmap()
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.successor; s != nil {
		s.Reannounce(ip)
		return
	}
	o, ok := r.owned[ip]
	if !ok || o.state != stateAnswering || r.leaving {
		return
	}
	r.startBurstLocked(o)
}

// Yield stops answering for ip, which another speaker keeps, and watches
// the link: probes for it go out back to back (a round every
// yieldRoundInterval or so), and the first round that no host answers
// makes the responder answer again, with gratuitous announcements, as a
// take-over (OnProbed is told); yieldSilentRounds of them in a row, so
// that one missed answer moves nothing. So the address is never answered twice
// while the other speaker answers it, and never left unanswered for more
// than about a round once it stops. A foreign host's answer is a
// conflict, as for a probe. An address still being probed is yielded
// the same way, before it was ever answered: the speaker that answered
// the probe keeps it, and no gratuitous announcement points neighbours
// here. It does nothing for an address not owned, in conflict or
// yielded already.
func (r *Responder) Yield(ip netip.Addr) bool {
	ip = ip.Unmap()
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.successor; s != nil {
		return s.Yield(ip)
	}
	o, ok := r.owned[ip]
	if !ok || (o.state != stateAnswering && o.state != stateProbing) {
		return false
	}
	o.state = stateYielded
	o.probe = &probeState{reprobe: r.opts.ReprobeInterval}
	r.startProbeLocked(o, time.Now().Add(r.yieldGapLocked()))
	return true
}

// Resume answers again for a yielded address at once, with gratuitous
// announcements: the speaker it yielded to is known to be gone, or to
// agree that this one keeps it. It does nothing for any other address.
func (r *Responder) Resume(ip netip.Addr) bool {
	ip = ip.Unmap()
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.successor; s != nil {
		return s.Resume(ip)
	}
	o, ok := r.owned[ip]
	if !ok || o.state != stateYielded || r.leaving {
		return false
	}
	o.state, o.probe, o.probesSent = stateAnswering, nil, 0
	r.startBurstLocked(o)
	return true
}

// Check asks the link once who answers for ip, which this responder
// answers for: another speaker that answers too shows itself, and its
// answer reaches OnPeerClaim. It does nothing for an address not
// answered.
func (r *Responder) Check(ip netip.Addr) {
	ip = ip.Unmap()
	r.mu.RLock()
	s, o := r.successor, r.owned[ip]
	r.mu.RUnlock()
	if s != nil {
		s.Check(ip)
		return
	}
	if o == nil || o.state != stateAnswering {
		return
	}
	if err := r.sendProbe(ip); err != nil {
		r.log.Error(err, "asking who answers", "address", ip.String())
	}
}

// Yielded tells whether ip is not answered because another speaker keeps
// it (Yield).
func (r *Responder) Yielded(ip netip.Addr) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if s := r.successor; s != nil {
		return s.Yielded(ip)
	}
	o := r.owned[ip.Unmap()]
	return o != nil && o.state == stateYielded
}

// Withdraw stops answering for ip at once (and probing it).
func (r *Responder) Withdraw(ip netip.Addr) {
	ip = ip.Unmap()
	r.mu.Lock()
	if s := r.successor; s != nil {
		r.mu.Unlock()
		s.Withdraw(ip)
		return
	}
	o, ok := r.owned[ip]
	delete(r.owned, ip)
	if ok {
		r.cancelLocked(o)
	}
	r.mu.Unlock()
	if !ok {
		return
	}
	if ip.Is6() {
		if err := r.membership(ip, leaveGroup); err != nil {
			r.log.Error(err, "leaving solicited-node group", "address", ip.String())
		}
	}
}

// HandOver makes to answer for everything r owns, and r pass every later
// call on to it: the interface was deleted and made again (or its MAC
// changed), and r's sockets are bound to the old one. Addresses r
// answers for are announced at once, with gratuitous announcements (the
// MAC may be new); the others (probing, in conflict, yielded) are
// probed first. The caller then ends r's Run.
func (r *Responder) HandOver(to *Responder) {
	r.mu.Lock()
	if r.successor != nil || to == r {
		r.mu.Unlock()
		return
	}
	r.successor = to
	answered := make(map[netip.Addr]bool, len(r.owned))
	for ip, o := range r.owned {
		answered[ip] = o.state == stateAnswering
		r.cancelLocked(o)
	}
	clear(r.owned)
	r.mu.Unlock()
	// The counters go on where these stop (they are exported as
	// counters of the interface, which never go back).
	for _, c := range [][2]*atomic.Uint64{
		{&to.Stats.ARPRequests, &r.Stats.ARPRequests}, {&to.Stats.ARPAnswers, &r.Stats.ARPAnswers},
		{&to.Stats.NDPSolicitations, &r.Stats.NDPSolicitations}, {&to.Stats.NDPAnswers, &r.Stats.NDPAnswers},
		{&to.Stats.Gratuitous, &r.Stats.Gratuitous}, {&to.Stats.Conflicts, &r.Stats.Conflicts},
	} {
		c[0].Add(c[1].Load())
	}
	for ip, answered := range answered {
		if err := to.Announce(ip, AnnounceOptions{Probe: !answered}); err != nil {
			r.log.Error(err, "handing an address over to the re-created interface", "address", ip.String())
		}
	}
}

func (r *Responder) sendProbe(ip netip.Addr) error {
	if ip.Is4() {
		p, err := arpProbe(ip, r.ifi.HardwareAddr)
		if err != nil {
			return fmt.Errorf("building ARP probe: %w", err)
		}
		if err := r.arp.WriteTo(p, broadcast); err != nil {
			return fmt.Errorf("sending ARP probe: %w", err)
		}
		return nil
	}
	frame := dadProbe(ip, r.ifi.HardwareAddr)
	if frame == nil {
		return errors.New("building duplicate address detection probe")
	}
	if _, err := r.ndp.WriteTo(frame, &packet.Addr{HardwareAddr: net.HardwareAddr(frame[0:6])}); err != nil {
		return fmt.Errorf("sending duplicate address detection probe: %w", err)
	}
	return nil
}

// observe handles another host's claim on an address: while probing it is
// a conflict; while answering, a claim (not a probe, which the answer
// path answers) is counted, reported and defended, at most once every
// defendInterval.
func (r *Responder) observe(c claim) {
	r.mu.RLock()
	o := r.owned[c.Address]
	var state addrState
	if o != nil {
		state = o.state
	}
	r.mu.RUnlock()
	if o == nil {
		return
	}
	if r.Leaving() {
		if !c.Probe {
			// The successor announced it (or a foreign host claims
			// it): either way not this stopping speaker's to defend.
			r.Withdraw(c.Address)
		}
		return
	}
	if r.opts.Speaker != nil {
		if node, ok := r.opts.Speaker(c.MAC); ok {
			r.peerClaim(c, node, o, state)
			return
		}
	}
	if state != stateAnswering {
		// A claim during a probe round ends it at once; between rounds
		// (in conflict, waiting) the next round finds out afresh.
		r.mu.Lock()
		if r.owned[c.Address] == o && o.state != stateAnswering && o.probesSent > 0 && o.probe.claim == nil {
			o.probe.claim = append(net.HardwareAddr(nil), c.MAC...)
			r.scheduleLocked(o, taskProbe, time.Now())
		}
		r.mu.Unlock()
		return
	}
	if c.Probe {
		return
	}
	r.mu.Lock()
	now := time.Since(r.started)
	if r.owned[c.Address] != o || (o.defended != 0 && now-o.defended < defendInterval) {
		r.mu.Unlock()
		return
	}
	o.defended = max(now, 1)
	r.mu.Unlock()
	r.Stats.Conflicts.Add(1)
	mac := append(net.HardwareAddr(nil), c.MAC...)
	r.log.Info("another host claims an address we answer for; defending it", "address", c.Address.String(), "mac", mac.String())
	if err := r.sendGratuitous(c.Address); err != nil {
		r.log.Error(err, "defending address", "address", c.Address.String())
	} else {
		r.Stats.Gratuitous.Add(1)
	}
	r.report(Conflict{Kind: ConflictSeen, Address: c.Address, MAC: mac})
}

// peerClaim handles another speaker's claim on an address: it ends a
// yielded address's probe round (the speaker kept it still answers), is
// told to OnPeerClaim unless it is a probe, and is logged at most once per
// defendInterval.
func (r *Responder) peerClaim(c claim, node string, o *owned, state addrState) {
	r.mu.Lock()
	if state == stateYielded && r.owned[c.Address] == o && o.state == stateYielded && o.probesSent > 0 && o.probe.claim == nil {
		o.probe.claim, o.probe.claimBySpeaker = append(net.HardwareAddr(nil), c.MAC...), true
		r.scheduleLocked(o, taskProbe, time.Now())
	}
	r.mu.Unlock()
	if !c.Probe && r.opts.OnPeerClaim != nil {
		r.opts.OnPeerClaim(PeerClaim{Address: c.Address, Interface: r.ifi.Name, MAC: append(net.HardwareAddr(nil), c.MAC...),
			Node: node, Answering: state == stateAnswering})
	}
	r.mu.Lock()
	now := time.Since(r.started)
	if r.peerLogged != 0 && now-r.peerLogged < defendInterval {
		r.mu.Unlock()
		return
	}
	r.peerLogged = max(now, 1)
	r.mu.Unlock()
	what := "answers for"
	if c.Probe {
		what = "probes"
	}
	r.log.Info("another barelb speaker "+what+" an address this node announces: a hand-over or the election settling, not a conflict",
		"address", c.Address.String(), "mac", c.MAC.String(), "speakerNode", node, "answering", state == stateAnswering)
}

func (r *Responder) report(c Conflict) {
	if r.opts.OnConflict == nil {
		return
	}
	c.Interface = r.ifi.Name
	r.opts.OnConflict(c)
}

// periodic repeats the gratuitous announcement of every answered address
// every GratuitousInterval until ctx ends.
func (r *Responder) periodic(ctx context.Context) {
	t := time.NewTicker(r.opts.GratuitousInterval)
	defer t.Stop()
	var ips []netip.Addr
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ips = ips[:0]
		r.mu.RLock()
		if r.leaving {
			r.mu.RUnlock()
			continue
		}
		for ip, o := range r.owned {
			if o.state == stateAnswering {
				ips = append(ips, ip)
			}
		}
		r.mu.RUnlock()
		for _, ip := range ips {
			if ctx.Err() != nil {
				return
			}
			if err := r.sendGratuitous(ip); err != nil {
				r.log.Error(err, "sending periodic gratuitous announcement", "address", ip.String())
				continue
			}
			r.Stats.Gratuitous.Add(1)
		}
	}
}

// solicitedNodeMAC is the Ethernet group of ip's solicited-node multicast
// address ff02::1:ffXX:XXXX.
func solicitedNodeMAC(ip netip.Addr) net.HardwareAddr {
	a := ip.As16()
	return multicastMAC(netip.AddrFrom16([16]byte{0xff, 0x02, 11: 0x01, 12: 0xff, 13: a[13], 14: a[14], 15: a[15]}))
}

var broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

func (r *Responder) sendGratuitous(ip netip.Addr) error {
	hw := r.ifi.HardwareAddr
	if ip.Is4() {
		// Clients accept a gratuitous request even where they ignore an
		// unsolicited reply; send both, as switches and hosts differ.
		for _, op := range []arp.Operation{arp.OperationRequest, arp.OperationReply} {
			p, err := arp.NewPacket(op, hw, ip, broadcast, ip)
			if err != nil {
				return fmt.Errorf("building gratuitous ARP: %w", err)
			}
			if err := r.arp.WriteTo(p, broadcast); err != nil {
				return fmt.Errorf("sending gratuitous ARP: %w", err)
			}
		}
		return nil
	}
	frame := unsolicitedAdvertisement(ip, hw, r.linkLocal)
	if frame == nil {
		return errors.New("building unsolicited advertisement")
	}
	if _, err := r.ndp.WriteTo(frame, &packet.Addr{HardwareAddr: multicastMAC(allNodes)}); err != nil {
		return fmt.Errorf("sending unsolicited advertisement: %w", err)
	}
	return nil
}

// serveARP reads ARP packets and answers requests for owned addresses.
// It is the hot path (a speaker may own thousands of addresses, and every
// host on the LAN asks): it reads into one buffer and writes replies from
// another with plain read(2) and write(2) on the bound packet socket,
// without a per-packet sockaddr, frame or reply allocation.
func (r *Responder) serveARP(ctx context.Context) {
	hw := r.ifi.HardwareAddr
	raw, err := r.arpConn.SyscallConn()
	if err != nil {
		r.log.Error(err, "reaching the ARP socket")
		return
	}
	buf, out := make([]byte, 128), make([]byte, arpFrameLen)
	var n int
	var readErr, writeErr error
	read := func(fd uintptr) bool {
		n, readErr = unix.Read(int(fd), buf)
		return readErr != unix.EAGAIN
	}
	write := func(fd uintptr) bool {
		_, writeErr = unix.Write(int(fd), out)
		return writeErr != unix.EAGAIN
	}
	var p arp.Packet
	for {
		if err := raw.Read(read); err != nil || ctx.Err() != nil {
			return // closed
		}
		if readErr != nil || n < arpFrameLen || buf[12] != 0x08 || buf[13] != 0x06 || p.UnmarshalBinary(buf[ethernetHeaderLen:n]) != nil {
			continue // not an Ethernet/IPv4 ARP packet
		}
		if c, ok := arpClaim(&p, buf[6:12], hw); ok {
			r.observe(c)
		}
		if p.Operation != arp.OperationRequest {
			continue
		}
		r.Stats.ARPRequests.Add(1)
		if !shouldAnswerARP(&p, r.Owns) {
			continue
		}
		putARPReply(out, hw, p.TargetIP, p.SenderHardwareAddr, p.SenderIP)
		if err := raw.Write(write); err != nil || writeErr != nil {
			r.log.Error(errors.Join(err, writeErr), "answering ARP", "address", p.TargetIP.String())
			continue
		}
		r.Stats.ARPAnswers.Add(1)
	}
}

func (r *Responder) serveNDP(ctx context.Context) {
	buf := make([]byte, 65536)
	for {
		n, _, err := r.ndp.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if c, ok := ndpClaim(buf[:n], r.ifi.HardwareAddr); ok {
			r.observe(c)
		}
		if n <= ethernetHeaderLen+ipv6HeaderLen || buf[ethernetHeaderLen+ipv6HeaderLen] != icmpv6NeighborSolicitation {
			continue // an advertisement
		}
		r.Stats.NDPSolicitations.Add(1)
		reply := ndpAnswer(buf[:n], r.Owns, r.ifi.HardwareAddr, r.linkLocal)
		if reply == nil {
			continue
		}
		if _, err := r.ndp.WriteTo(reply, &packet.Addr{HardwareAddr: net.HardwareAddr(reply[0:6])}); err != nil {
			r.log.Error(err, "answering neighbor solicitation")
			continue
		}
		r.Stats.NDPAnswers.Add(1)
	}
}
