package layer2

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

// Address conflict detection, after RFC 5227 (IPv4) and RFC 4862's
// duplicate address detection (IPv6), shortened for a LAN.
//
// RFC 5227 waits up to 1 s, sends 3 probes 1-2 s apart and waits 2 s more:
// 3 to 7 s before an address is used. It was written for hosts configuring
// themselves on links of any kind; a host on a switched LAN answers an ARP
// probe or a solicitation within a millisecond or so. barelb probes an
// address new to the cluster, and a take-over only when its last answerer
// may still answer (the caller's choice: AnnounceOptions.Probe); it sends probeCount
// probes probeInterval apart and waits probeWait after the last one: 250 ms
// in all, which still allows for a lost probe and a busy host.
const (
	probeCount    = 2
	probeInterval = 100 * time.Millisecond
	probeWait     = 150 * time.Millisecond
	// DefaultReprobeInterval is the first wait before probing an address
	// in conflict again; it doubles up to maxReprobeFactor times it.
	DefaultReprobeInterval = 10 * time.Second
	maxReprobeFactor       = 3
	// yieldRoundInterval is the least pause between two probe rounds of
	// a yielded address (Yield), and yieldSilentRounds how many rounds in
	// a row nobody must answer before it is taken over: a speaker that
	// stops answering an address another yielded to it is replaced within
	// about 0.6-0.9 s.
	yieldRoundInterval = 50 * time.Millisecond
	yieldSilentRounds  = 2
	// maxYieldProbeRate bounds the probes a second that a responder
	// sends for its yielded addresses.
	maxYieldProbeRate = 200
	// defendInterval is the least time between two defences of an address
	// another host claims while it is answered (RFC 5227 section 2.4 (c)
	// uses 10 s), and between two reports of it.
	defendInterval = 10 * time.Second
)

// ConflictKind says what a Conflict report is about.
type ConflictKind int

const (
	// ConflictProbed: a probe found the address in use; it is not answered
	// and is probed again from time to time.
	ConflictProbed ConflictKind = iota + 1
	// ConflictSeen: another host claimed an address that is answered; the
	// responder keeps answering and defends it with a gratuitous
	// announcement.
	ConflictSeen
	// ConflictResolved: an address in conflict probed free again and is
	// now answered.
	ConflictResolved
)

func (k ConflictKind) String() string {
	switch k {
	case ConflictProbed:
		return "probed"
	case ConflictSeen:
		return "seen"
	case ConflictResolved:
		return "resolved"
	}
	return "unknown"
}

// Conflict reports an address used by another host on the link.
type Conflict struct {
	Kind      ConflictKind
	Address   netip.Addr
	Interface string
	// MAC is the other host's (nil for ConflictResolved).
	MAC net.HardwareAddr
}

// claim is what a packet from another host says about an address.
type claim struct {
	Address netip.Addr
	// Probe: the host only asks whether the address is free (an ARP probe
	// or a duplicate address detection solicitation), which conflicts only
	// with our own probe of it.
	Probe bool
	MAC   net.HardwareAddr
}

// arpClaim returns what an ARP packet from another host claims: the
// sender's address (any operation), or the target of an RFC 5227 probe
// (sender 0.0.0.0). Packets sent with hw, our own, claim nothing.
func arpClaim(p *arp.Packet, src, hw net.HardwareAddr) (claim, bool) {
	if p == nil || len(p.SenderHardwareAddr) != 6 || bytes.Equal(p.SenderHardwareAddr, hw) || bytes.Equal(src, hw) {
		return claim{}, false
	}
	switch {
	case p.SenderIP.Is4() && !p.SenderIP.IsUnspecified():
		return claim{Address: p.SenderIP, MAC: p.SenderHardwareAddr}, true
	case p.SenderIP.IsUnspecified() && p.Operation == arp.OperationRequest && p.TargetIP.Is4() && !p.TargetIP.IsUnspecified():
		return claim{Address: p.TargetIP, Probe: true, MAC: p.SenderHardwareAddr}, true
	}
	return claim{}, false
}

// ndpClaim returns what a frame from another host carrying NDP claims: an
// advertisement claims its target; a solicitation claims its source
// address, or probes its target when it comes from :: (duplicate address
// detection). Frames sent from hw, our own, claim nothing.
func ndpClaim(frame []byte, hw net.HardwareAddr) (claim, bool) {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(frame); err != nil || f.EtherType != etherTypeIPv6 || len(f.Source) != 6 || bytes.Equal(f.Source, hw) {
		return claim{}, false
	}
	p := f.Payload
	if len(p) < ipv6HeaderLen || p[0]>>4 != 6 || p[6] != protocolICMPv6 || p[7] != ndpHopLimit {
		return claim{}, false
	}
	payloadLen := int(binary.BigEndian.Uint16(p[4:6]))
	if len(p) < ipv6HeaderLen+payloadLen {
		return claim{}, false
	}
	from := netip.AddrFrom16([16]byte(p[8:24]))
	msg, err := ndp.ParseMessage(p[ipv6HeaderLen : ipv6HeaderLen+payloadLen])
	if err != nil {
		return claim{}, false
	}
	mac := f.Source
	switch m := msg.(type) {
	case *ndp.NeighborAdvertisement:
		target := m.TargetAddress.WithZone("")
		if !target.Is6() || target.Is4In6() || !target.IsGlobalUnicast() {
			return claim{}, false
		}
		for _, o := range m.Options {
			if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target && len(lla.Addr) == 6 {
				if bytes.Equal(lla.Addr, hw) {
					return claim{}, false
				}
				mac = lla.Addr
			}
		}
		return claim{Address: target, MAC: mac}, true
	case *ndp.NeighborSolicitation:
		target := m.TargetAddress.WithZone("")
		if from.IsUnspecified() {
			if !target.Is6() || target.Is4In6() || !target.IsGlobalUnicast() {
				return claim{}, false
			}
			return claim{Address: target, Probe: true, MAC: mac}, true
		}
		if from.IsGlobalUnicast() && !from.Is4In6() {
			return claim{Address: from, MAC: mac}, true
		}
	}
	return claim{}, false
}

// arpProbe is the RFC 5227 probe for ip: a request from 0.0.0.0 with no
// target hardware address.
func arpProbe(ip netip.Addr, hw net.HardwareAddr) (*arp.Packet, error) {
	return arp.NewPacket(arp.OperationRequest, hw, netip.IPv4Unspecified(), make(net.HardwareAddr, 6), ip)
}

// dadProbe is the duplicate address detection solicitation for ip: from
// :: to ip's solicited-node group, with no source link-layer option
// (RFC 4862 5.4.2).
func dadProbe(ip netip.Addr, hw net.HardwareAddr) []byte {
	group, err := ndp.SolicitedNodeMulticast(ip)
	if err != nil {
		return nil
	}
	return icmpFrame(&ndp.NeighborSolicitation{TargetAddress: ip}, hw, netip.IPv6Unspecified(), multicastMAC(group), group)
}
