package layer2

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

// arpAnswer returns the reply to an ARP packet, or nil when it calls for
// none: only requests for an owned address are answered, and never a
// request whose sender claims the address itself (a gratuitous
// announcement from another host, which is a conflict, not a question).
func arpAnswer(p *arp.Packet, owns func(netip.Addr) bool, hw net.HardwareAddr) *arp.Packet {
	if !shouldAnswerARP(p, owns) {
		return nil
	}
	reply, err := arp.NewPacket(arp.OperationReply, hw, p.TargetIP, p.SenderHardwareAddr, p.SenderIP)
	if err != nil {
		return nil
	}
	return reply
}

// shouldAnswerARP is arpAnswer's decision.
func shouldAnswerARP(p *arp.Packet, owns func(netip.Addr) bool) bool {
	if p == nil || p.Operation != arp.OperationRequest || !p.TargetIP.Is4() || !p.SenderIP.Is4() || len(p.SenderHardwareAddr) != 6 {
		return false
	}
	return p.SenderIP != p.TargetIP && owns(p.TargetIP)
}

// arpFrameLen is the length of an Ethernet frame carrying an Ethernet/IPv4
// ARP packet (without padding).
const arpFrameLen = ethernetHeaderLen + 28

// putARPReply writes into out (arpFrameLen bytes) the frame of the ARP
// reply from hw at ip to dstHW at dstIP: what arpAnswer's reply is on the
// wire, unicast to the asker.
func putARPReply(out []byte, hw net.HardwareAddr, ip netip.Addr, dstHW net.HardwareAddr, dstIP netip.Addr) {
	copy(out[0:6], dstHW)
	copy(out[6:12], hw)
	binary.BigEndian.PutUint16(out[12:14], uint16(ethernet.EtherTypeARP))
	binary.BigEndian.PutUint16(out[14:16], 1) // Ethernet
	binary.BigEndian.PutUint16(out[16:18], uint16(ethernet.EtherTypeIPv4))
	out[18], out[19] = 6, 4
	binary.BigEndian.PutUint16(out[20:22], uint16(arp.OperationReply))
	copy(out[22:28], hw)
	a := ip.As4()
	copy(out[28:32], a[:])
	copy(out[32:38], dstHW)
	d := dstIP.As4()
	copy(out[38:42], d[:])
}

const (
	ipv6HeaderLen     = 40
	protocolICMPv6    = 58
	ndpHopLimit       = 255
	etherTypeIPv6     = 0x86dd
	etherTypeARP      = 0x0806
	ethernetHeaderLen = 14

	// ICMPv6 types of NDP's messages (RFC 4861 §4.3, §4.4).
	icmpv6NeighborSolicitation  = 135
	icmpv6NeighborAdvertisement = 136

	// A socket filter's verdicts: keep up to this many bytes of a frame
	// (all of it), or drop it.
	bpfKeep = 0xffff
	bpfDrop = 0
)

var allNodes = netip.MustParseAddr("ff02::1")

// ndpAnswer returns the Ethernet frame answering a frame that carries a
// Neighbor Solicitation for an owned address, or nil. src is the address
// the advertisement comes from (the interface's link-local address, or
// the owned address itself when there is none).
func ndpAnswer(frame []byte, owns func(netip.Addr) bool, hw net.HardwareAddr, src netip.Addr) []byte {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(frame); err != nil || f.EtherType != etherTypeIPv6 {
		return nil
	}
	p := f.Payload
	if len(p) < ipv6HeaderLen || p[0]>>4 != 6 || p[6] != protocolICMPv6 || p[7] != ndpHopLimit {
		return nil // RFC 4861 7.1.1: a solicitation not at hop limit 255 came from off-link
	}
	payloadLen := int(binary.BigEndian.Uint16(p[4:6]))
	if len(p) < ipv6HeaderLen+payloadLen {
		return nil
	}
	from := netip.AddrFrom16([16]byte(p[8:24]))
	msg, err := ndp.ParseMessage(p[ipv6HeaderLen : ipv6HeaderLen+payloadLen])
	if err != nil {
		return nil
	}
	ns, ok := msg.(*ndp.NeighborSolicitation)
	if !ok || !ns.TargetAddress.Is6() || ns.TargetAddress.Is4In6() || !owns(ns.TargetAddress.WithZone("")) {
		return nil
	}
	target := ns.TargetAddress.WithZone("")
	if !src.IsValid() {
		src = target
	}
	na := &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: target,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: hw}},
	}
	dst, dstHW := from, f.Source
	if from.IsUnspecified() {
		// A duplicate address detection probe: the answer goes to all
		// nodes, unsolicited (RFC 4861 7.2.4).
		dst, dstHW = allNodes, multicastMAC(allNodes)
	} else {
		na.Solicited = true
	}
	return icmpFrame(na, hw, src, dstHW, dst)
}

// icmpFrame wraps an NDP message in IPv6 and Ethernet.
func icmpFrame(msg ndp.Message, hw net.HardwareAddr, src netip.Addr, dstHW net.HardwareAddr, dst netip.Addr) []byte {
	icmp, err := ndp.MarshalMessageChecksum(msg, src, dst)
	if err != nil {
		return nil
	}
	ip := make([]byte, ipv6HeaderLen+len(icmp))
	ip[0] = 6 << 4
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(icmp)))
	ip[6], ip[7] = protocolICMPv6, ndpHopLimit
	s, d := src.As16(), dst.As16()
	copy(ip[8:24], s[:])
	copy(ip[24:40], d[:])
	copy(ip[ipv6HeaderLen:], icmp)
	out, err := (&ethernet.Frame{Destination: dstHW, Source: hw, EtherType: etherTypeIPv6, Payload: ip}).MarshalBinary()
	if err != nil {
		return nil
	}
	return out
}

// unsolicitedAdvertisement announces that ip is now at hw (Override set,
// so that neighbours replace an older entry at once).
func unsolicitedAdvertisement(ip netip.Addr, hw net.HardwareAddr, src netip.Addr) []byte {
	if !src.IsValid() {
		src = ip
	}
	na := &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: ip,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: hw}},
	}
	return icmpFrame(na, hw, src, multicastMAC(allNodes), allNodes)
}

// multicastMAC is the Ethernet address of an IPv6 multicast group.
func multicastMAC(group netip.Addr) net.HardwareAddr {
	g := group.As16()
	return net.HardwareAddr{0x33, 0x33, g[12], g[13], g[14], g[15]}
}
