package layer2

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

var (
	ourMAC    = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	clientMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x64}
	vip4      = netip.MustParseAddr("198.51.100.200")
	vip6      = netip.MustParseAddr("2001:db8:100::200")
	client4   = netip.MustParseAddr("198.51.100.100")
	client6   = netip.MustParseAddr("2001:db8:100::100")
	linkLocal = netip.MustParseAddr("fe80::1")
)

func ownsVIPs(ip netip.Addr) bool { return ip == vip4 || ip == vip6 }

func TestARPAnswer(t *testing.T) {
	req := func(op arp.Operation, sender, target netip.Addr) *arp.Packet {
		p, err := arp.NewPacket(op, clientMAC, sender, ethernet.Broadcast, target)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		p    *arp.Packet
		want bool
	}{
		{"request for an owned address", req(arp.OperationRequest, client4, vip4), true},
		{"RFC 5227 probe for an owned address", req(arp.OperationRequest, netip.IPv4Unspecified(), vip4), true},
		{"request for another address", req(arp.OperationRequest, client4, client4.Next()), false},
		{"reply, not a request", req(arp.OperationReply, client4, vip4), false},
		{"another host announcing our address", req(arp.OperationRequest, vip4, vip4), false},
		{"nil", nil, false},
	}
	for _, tc := range tests {
		got := arpAnswer(tc.p, ownsVIPs, ourMAC)
		if (got != nil) != tc.want {
			t.Errorf("%s: answered %v, want %v", tc.name, got != nil, tc.want)
			continue
		}
		if got == nil {
			continue
		}
		if got.Operation != arp.OperationReply || got.SenderIP != vip4 || !bytes.Equal(got.SenderHardwareAddr, ourMAC) ||
			got.TargetIP != tc.p.SenderIP || !bytes.Equal(got.TargetHardwareAddr, clientMAC) {
			t.Errorf("%s: bad reply %+v", tc.name, got)
		}
	}
}

// solicitation builds the frame a client sends to resolve target.
func solicitation(t testing.TB, src, dst, target netip.Addr, dstMAC net.HardwareAddr, hopLimit byte) []byte {
	ns := &ndp.NeighborSolicitation{TargetAddress: target}
	if !src.IsUnspecified() {
		ns.Options = []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: clientMAC}}
	}
	icmp, err := ndp.MarshalMessageChecksum(ns, src, dst)
	if err != nil {
		t.Fatal(err)
	}
	ip := make([]byte, ipv6HeaderLen+len(icmp))
	ip[0] = 6 << 4
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(icmp)))
	ip[6], ip[7] = protocolICMPv6, hopLimit
	s, d := src.As16(), dst.As16()
	copy(ip[8:24], s[:])
	copy(ip[24:40], d[:])
	copy(ip[40:], icmp)
	frame, err := (&ethernet.Frame{Destination: dstMAC, Source: clientMAC, EtherType: etherTypeIPv6, Payload: ip}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return frame
}

// parseAdvertisement reads a frame ndpAnswer produced.
func parseAdvertisement(t testing.TB, frame []byte) (*ethernet.Frame, netip.Addr, *ndp.NeighborAdvertisement) {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(frame); err != nil {
		t.Fatalf("reply is not Ethernet: %v", err)
	}
	p := f.Payload
	if len(p) < ipv6HeaderLen || p[7] != ndpHopLimit {
		t.Fatalf("reply is not IPv6 at hop limit 255")
	}
	msg, err := ndp.ParseMessage(p[ipv6HeaderLen:])
	if err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	na, ok := msg.(*ndp.NeighborAdvertisement)
	if !ok {
		t.Fatalf("reply is %T", msg)
	}
	return &f, netip.AddrFrom16([16]byte(p[24:40])), na
}

func TestNDPAnswer(t *testing.T) {
	snm, _ := ndp.SolicitedNodeMulticast(vip6)
	tests := []struct {
		name      string
		frame     []byte
		want      bool
		solicited bool
		dst       netip.Addr
	}{
		{"multicast solicitation", solicitation(t, client6, snm, vip6, multicastMAC(snm), 255), true, true, client6},
		{"unicast NUD probe to the address itself", solicitation(t, client6, vip6, vip6, ourMAC, 255), true, true, client6},
		{"duplicate address detection probe", solicitation(t, netip.IPv6Unspecified(), snm, vip6, multicastMAC(snm), 255), true, false, allNodes},
		{"another address", solicitation(t, client6, snm, vip6.Next(), multicastMAC(snm), 255), false, false, netip.Addr{}},
		{"from off-link (hop limit 64)", solicitation(t, client6, snm, vip6, multicastMAC(snm), 64), false, false, netip.Addr{}},
		{"garbage", []byte{1, 2, 3}, false, false, netip.Addr{}},
	}
	for _, tc := range tests {
		got := ndpAnswer(tc.frame, ownsVIPs, ourMAC, linkLocal)
		if (got != nil) != tc.want {
			t.Errorf("%s: answered %v, want %v", tc.name, got != nil, tc.want)
			continue
		}
		if got == nil {
			continue
		}
		f, dst, na := parseAdvertisement(t, got)
		if na.TargetAddress != vip6 || !na.Override || na.Solicited != tc.solicited || dst != tc.dst || !bytes.Equal(f.Source, ourMAC) {
			t.Errorf("%s: bad advertisement %+v to %v", tc.name, na, dst)
		}
		if len(na.Options) != 1 || !bytes.Equal(na.Options[0].(*ndp.LinkLayerAddress).Addr, ourMAC) {
			t.Errorf("%s: advertisement does not carry our MAC: %+v", tc.name, na.Options)
		}
	}
}

// FuzzARPAnswer: no packet makes the responder panic or answer for an
// address it does not own.
func FuzzARPAnswer(f *testing.F) {
	for _, target := range []netip.Addr{vip4, client4} {
		p, _ := arp.NewPacket(arp.OperationRequest, clientMAC, client4, ethernet.Broadcast, target)
		b, _ := p.MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p arp.Packet
		if err := p.UnmarshalBinary(b); err != nil {
			return
		}
		reply := arpAnswer(&p, ownsVIPs, ourMAC)
		if reply != nil && (!ownsVIPs(reply.SenderIP) || reply.SenderIP != p.TargetIP) {
			t.Fatalf("answered for %v", reply.SenderIP)
		}
	})
}

// FuzzNDPAnswer: no frame makes the responder panic or advertise an
// address it does not own.
func FuzzNDPAnswer(f *testing.F) {
	snm, _ := ndp.SolicitedNodeMulticast(vip6)
	f.Add(solicitation(f, client6, snm, vip6, multicastMAC(snm), 255))
	f.Add(solicitation(f, client6, vip6, vip6, ourMAC, 255))
	f.Add(solicitation(f, netip.IPv6Unspecified(), snm, vip6, multicastMAC(snm), 255))
	f.Add(solicitation(f, client6, snm, vip6.Next(), multicastMAC(snm), 255))
	f.Fuzz(func(t *testing.T, frame []byte) {
		reply := ndpAnswer(frame, ownsVIPs, ourMAC, linkLocal)
		if reply == nil {
			return
		}
		_, _, na := parseAdvertisement(t, reply)
		if !ownsVIPs(na.TargetAddress) {
			t.Fatalf("advertised %v", na.TargetAddress)
		}
	})
}

// TestPutARPReply: the answer path's hand-built frame is arpAnswer's reply
// as mdlayher/arp would put it on the wire.
func TestPutARPReply(t *testing.T) {
	req, err := arp.NewPacket(arp.OperationRequest, clientMAC, client4, ethernet.Broadcast, vip4)
	if err != nil {
		t.Fatal(err)
	}
	reply := arpAnswer(req, ownsVIPs, ourMAC)
	pb, err := reply.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	want, err := (&ethernet.Frame{Destination: clientMAC, Source: ourMAC, EtherType: ethernet.EtherTypeARP, Payload: pb}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, arpFrameLen)
	putARPReply(got, ourMAC, vip4, clientMAC, client4)
	// MarshalBinary pads the frame to Ethernet's minimum; the kernel pads
	// what write(2) sends.
	if !bytes.Equal(got, want[:arpFrameLen]) {
		t.Errorf("frame\n%x, want\n%x", got, want[:arpFrameLen])
	}
	if allocs := testing.AllocsPerRun(100, func() { putARPReply(got, ourMAC, vip4, clientMAC, client4) }); allocs != 0 {
		t.Errorf("%v allocations per reply", allocs)
	}
}
