package lab

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"

	"github.com/barelb/barelb/internal/testenv"
)

// NodeOfMAC names the node whose LAN link has mac ("" when none).
func (l *Lab) NodeOfMAC(mac string) string {
	for _, n := range l.Nodes() {
		if strings.EqualFold(n.MAC(SegmentLAN), mac) {
			return n.Name
		}
	}
	return ""
}

// Neighbour reads host's neighbour-table entry for ip, as `ip neigh show`
// prints it: the MAC ("" when none) and the state (REACHABLE, STALE...).
// It asks nothing on the wire: what the host's kernel believes is what
// its connections use.
func (l *Lab) Neighbour(host, ip string) (mac, state string) {
	h, err := l.Host(host)
	if err != nil {
		return "", ""
	}
	out, err := exec.Command("ip", "-n", h.Netns, "neigh", "show", ip).CombinedOutput()
	if err != nil {
		return "", ""
	}
	f := strings.Fields(string(out))
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "lladdr" {
			mac = f[i+1]
		}
	}
	if len(f) > 0 {
		state = f[len(f)-1]
	}
	return mac, state
}

// WhoHas asks the LAN from a host which MACs have ip (an ARP request, or
// a Neighbor Solicitation to ip's solicited-node group), as arping and
// ndisc6 would, and returns the MACs that answered within a second,
// sorted.
func (l *Lab) WhoHas(host string, ip netip.Addr) ([]string, error) {
	return l.WhoHasWithin(host, ip, time.Second)
}

// WhoHasWithin is WhoHas waiting for answers as long as wait.
func (l *Lab) WhoHasWithin(host string, ip netip.Addr, wait time.Duration) ([]string, error) {
	h, err := l.Host(host)
	if err != nil {
		return nil, err
	}
	ifname := h.Interface(SegmentLAN)
	src := h.Addr(SegmentLAN, 4)
	proto := etherTypeARP
	if ip.Is6() {
		src, proto = h.Addr(SegmentLAN, 6), etherTypeIPv6
	}
	var conn *packet.Conn
	var ifi *net.Interface
	err = testenv.InNetns(h.Netns, func() error {
		var err error
		if ifi, err = net.InterfaceByName(ifname); err != nil {
			return err
		}
		conn, err = packet.Listen(ifi, packet.Raw, proto, nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("opening a packet socket in %s: %w", host, err)
	}
	defer conn.Close()
	var frame []byte
	if ip.Is4() {
		p, err := arp.NewPacket(arp.OperationRequest, ifi.HardwareAddr, src, ethernet.Broadcast, ip)
		if err != nil {
			return nil, err
		}
		pb, _ := p.MarshalBinary()
		frame, err = (&ethernet.Frame{Destination: ethernet.Broadcast, Source: ifi.HardwareAddr, EtherType: ethernet.EtherTypeARP, Payload: pb}).MarshalBinary()
		if err != nil {
			return nil, err
		}
	} else {
		frame, err = solicitationFrame(ifi.HardwareAddr, src, ip)
		if err != nil {
			return nil, err
		}
	}
	if _, err := conn.WriteTo(frame, &packet.Addr{HardwareAddr: net.HardwareAddr(frame[0:6])}); err != nil {
		return nil, fmt.Errorf("asking for %s: %w", ip, err)
	}
	seen := map[string]bool{}
	deadline := time.Now().Add(wait)
	buf := make([]byte, 2048)
	for {
		_ = conn.SetReadDeadline(deadline)
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			break
		}
		if mac, ok := answerFor(buf[:n], ip, ifi.HardwareAddr); ok {
			seen[mac] = true
		}
	}
	var out []string
	for mac := range seen {
		out = append(out, mac)
	}
	sort.Strings(out)
	return out, nil
}

// solicitationFrame is a Neighbor Solicitation for target from src.
func solicitationFrame(hw net.HardwareAddr, src, target netip.Addr) ([]byte, error) {
	group, err := ndp.SolicitedNodeMulticast(target)
	if err != nil {
		return nil, err
	}
	ns := &ndp.NeighborSolicitation{TargetAddress: target, Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: hw}}}
	icmp, err := ndp.MarshalMessageChecksum(ns, src, group)
	if err != nil {
		return nil, err
	}
	ip := make([]byte, 40+len(icmp))
	ip[0] = 6 << 4
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(icmp)))
	ip[6], ip[7] = 58, 255
	s, d := src.As16(), group.As16()
	copy(ip[8:24], s[:])
	copy(ip[24:40], d[:])
	copy(ip[40:], icmp)
	g := group.As16()
	dst := net.HardwareAddr{0x33, 0x33, g[12], g[13], g[14], g[15]}
	return (&ethernet.Frame{Destination: dst, Source: hw, EtherType: ethernet.EtherTypeIPv6, Payload: ip}).MarshalBinary()
}

// answerFor returns the MAC an ARP reply or a Neighbor Advertisement for
// ip, not sent by ours, gives.
func answerFor(frame []byte, ip netip.Addr, ours net.HardwareAddr) (string, bool) {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(frame); err != nil || f.Source.String() == ours.String() {
		return "", false
	}
	switch f.EtherType {
	case ethernet.EtherTypeARP:
		var p arp.Packet
		if p.UnmarshalBinary(f.Payload) != nil || p.Operation != arp.OperationReply || p.SenderIP != ip {
			return "", false
		}
		return p.SenderHardwareAddr.String(), true
	case ethernet.EtherTypeIPv6:
		if len(f.Payload) < 40 || f.Payload[6] != 58 {
			return "", false
		}
		msg, err := ndp.ParseMessage(f.Payload[40:])
		if err != nil {
			return "", false
		}
		na, ok := msg.(*ndp.NeighborAdvertisement)
		if !ok || na.TargetAddress.WithZone("") != ip {
			return "", false
		}
		for _, o := range na.Options {
			if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target {
				return lla.Addr.String(), true
			}
		}
		return f.Source.String(), true
	}
	return "", false
}
