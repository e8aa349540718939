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

// Responder answers ARP and NDP for owned addresses on one interface.
type Responder struct {
	ifi       *net.Interface
	log       logr.Logger
	linkLocal netip.Addr
	arp       *arp.Client
	ndp       *packet.Conn
	// Stats are updated as packets come and go.
	Stats Stats

	mu    sync.RWMutex
	owned map[netip.Addr]context.CancelFunc // cancels the address's gratuitous burst
	ctx   context.Context
}

// NewResponder opens the packet sockets of interface ifi. The caller runs
// Run and eventually cancels its context, which closes them.
func NewResponder(ifi *net.Interface, log logr.Logger) (*Responder, error) {
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("interface %s has no Ethernet address", ifi.Name)
	}
	r := &Responder{ifi: ifi, log: log.WithValues("interface", ifi.Name), owned: map[netip.Addr]context.CancelFunc{}, ctx: context.Background()}
	if addrs, err := ifi.Addrs(); err == nil {
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is6() && p.Addr().IsLinkLocalUnicast() {
				r.linkLocal = p.Addr()
			}
		}
	}
	var err error
	if r.arp, err = arp.Dial(ifi); err != nil {
		return nil, fmt.Errorf("opening ARP socket on %s: %w", ifi.Name, err)
	}
	if r.ndp, err = packet.Listen(ifi, packet.Raw, etherTypeIPv6, nil); err != nil {
		r.arp.Close()
		return nil, fmt.Errorf("opening IPv6 packet socket on %s: %w", ifi.Name, err)
	}
	// Only Neighbor Solicitations reach the program; a packet socket sees
	// the unicast ones sent to the address itself too, which a socket bound
	// to an IPv6 address misses when the address is on no interface.
	filter, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: ethernetHeaderLen + 6, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: protocolICMPv6, SkipTrue: 3},
		bpf.LoadAbsolute{Off: ethernetHeaderLen + ipv6HeaderLen, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 135, SkipTrue: 1},
		bpf.RetConstant{Val: 0xffff},
		bpf.RetConstant{Val: 0},
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
	r.mu.Lock()
	r.ctx = ctx
	r.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); r.serveARP(ctx) }()
	go func() { defer wg.Done(); r.serveNDP(ctx) }()
	<-ctx.Done()
	r.Close()
	wg.Wait()
	return nil
}

// Owns tells whether the responder answers for ip.
func (r *Responder) Owns(ip netip.Addr) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.owned[ip]
	return ok
}

// Announce starts answering for ip and tells the LAN at once.
func (r *Responder) Announce(ip netip.Addr) error {
	ip = ip.Unmap()
	r.mu.Lock()
	if _, ok := r.owned[ip]; ok {
		r.mu.Unlock()
		return nil
	}
	burst, cancel := context.WithCancel(r.ctx)
	r.owned[ip] = cancel
	r.mu.Unlock()
	if ip.Is6() {
		if err := r.membership(ip, unix.PACKET_ADD_MEMBERSHIP); err != nil {
			r.Withdraw(ip)
			return err
		}
	}
	go r.gratuitous(burst, ip)
	return nil
}

// Reannounce repeats the gratuitous announcements of an address the
// responder answers for: neighbours may have learnt another node's MAC for
// it meanwhile, as on both sides of a network partition that has healed.
func (r *Responder) Reannounce(ip netip.Addr) {
	ip = ip.Unmap()
	r.mu.Lock()
	cancel, ok := r.owned[ip]
	if !ok {
		r.mu.Unlock()
		return
	}
	cancel()
	burst, cancel := context.WithCancel(r.ctx)
	r.owned[ip] = cancel
	r.mu.Unlock()
	go r.gratuitous(burst, ip)
}

// Withdraw stops answering for ip at once.
func (r *Responder) Withdraw(ip netip.Addr) {
	ip = ip.Unmap()
	r.mu.Lock()
	cancel, ok := r.owned[ip]
	delete(r.owned, ip)
	r.mu.Unlock()
	if !ok {
		return
	}
	cancel()
	if ip.Is6() {
		if err := r.membership(ip, unix.PACKET_DROP_MEMBERSHIP); err != nil {
			r.log.Error(err, "leaving solicited-node group", "address", ip.String())
		}
	}
}

// membership joins or leaves the solicited-node multicast group of ip at
// the Ethernet level, so that a NIC that filters multicast lets the
// address's solicitations in. The kernel counts joins per socket.
func (r *Responder) membership(ip netip.Addr, op int) error {
	group := solicitedNodeMAC(ip)
	raw, err := r.ndp.SyscallConn()
	if err != nil {
		return fmt.Errorf("reaching the IPv6 packet socket: %w", err)
	}
	mreq := unix.PacketMreq{Ifindex: int32(r.ifi.Index), Type: unix.PACKET_MR_MULTICAST, Alen: 6}
	copy(mreq.Address[:], group)
	var sockErr error
	if err := raw.Control(func(fd uintptr) {
		sockErr = unix.SetsockoptPacketMreq(int(fd), unix.SOL_PACKET, op, &mreq)
	}); err != nil {
		return fmt.Errorf("reaching the IPv6 packet socket: %w", err)
	}
	if sockErr != nil {
		return fmt.Errorf("multicast membership %s on %s: %w", group, r.ifi.Name, sockErr)
	}
	return nil
}

// solicitedNodeMAC is the Ethernet group of ip's solicited-node multicast
// address ff02::1:ffXX:XXXX.
func solicitedNodeMAC(ip netip.Addr) net.HardwareAddr {
	a := ip.As16()
	return multicastMAC(netip.AddrFrom16([16]byte{0xff, 0x02, 11: 0x01, 12: 0xff, 13: a[13], 14: a[14], 15: a[15]}))
}

// gratuitous sends gratuitous ARP (request and reply) or an unsolicited
// advertisement for ip on gratuitousSchedule, until ctx ends (the address
// was withdrawn).
func (r *Responder) gratuitous(ctx context.Context, ip netip.Addr) {
	start := time.Now()
	for _, at := range gratuitousSchedule {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(start.Add(at))):
		}
		if err := r.sendGratuitous(ip); err != nil {
			r.log.Error(err, "sending gratuitous announcement", "address", ip.String())
			continue
		}
		r.Stats.Gratuitous.Add(1)
	}
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

func (r *Responder) serveARP(ctx context.Context) {
	for {
		p, _, err := r.arp.Read()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			continue // not an Ethernet/IPv4 ARP packet
		}
		if p.Operation == arp.OperationRequest {
			r.Stats.ARPRequests.Add(1)
		}
		reply := arpAnswer(p, r.Owns, r.ifi.HardwareAddr)
		if reply == nil {
			continue
		}
		if err := r.arp.WriteTo(reply, p.SenderHardwareAddr); err != nil {
			r.log.Error(err, "answering ARP", "address", p.TargetIP.String())
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
