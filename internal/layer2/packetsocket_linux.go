package layer2

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// The operations of membership.
const (
	joinGroup  = unix.PACKET_ADD_MEMBERSHIP
	leaveGroup = unix.PACKET_DROP_MEMBERSHIP
)

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
