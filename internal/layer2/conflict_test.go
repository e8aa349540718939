package layer2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"

	"github.com/barelb/barelb/internal/testenv"
	"github.com/barelb/barelb/internal/testutil"
)

// claimOpts let cmp.Diff compare claims: addresses by value, no MAC the
// same as an empty one.
var claimOpts = cmp.Options{cmpopts.EquateComparable(netip.Addr{}), cmpopts.EquateEmpty()}

func TestARPClaim(t *testing.T) {
	pkt := func(op arp.Operation, mac net.HardwareAddr, sender, target netip.Addr) *arp.Packet {
		p, err := arp.NewPacket(op, mac, sender, ethernet.Broadcast, target)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	probe, err := arpProbe(vip4, clientMAC)
	if err != nil {
		t.Fatal(err)
	}
	ourProbe, err := arpProbe(vip4, ourMAC)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		p    *arp.Packet
		src  net.HardwareAddr
		want claim
		ok   bool
	}{
		{"gratuitous request from another host", pkt(arp.OperationRequest, clientMAC, vip4, vip4), clientMAC, claim{Address: vip4, MAC: clientMAC}, true},
		{"reply from another host", pkt(arp.OperationReply, clientMAC, vip4, client4), clientMAC, claim{Address: vip4, MAC: clientMAC}, true},
		{"a request claims its sender address", pkt(arp.OperationRequest, clientMAC, client4, vip4), clientMAC, claim{Address: client4, MAC: clientMAC}, true},
		{"another host's probe", probe, clientMAC, claim{Address: vip4, Probe: true, MAC: clientMAC}, true},
		{"our own probe", ourProbe, ourMAC, claim{}, false},
		{"our own gratuitous request", pkt(arp.OperationRequest, ourMAC, vip4, vip4), ourMAC, claim{}, false},
		{"sent from our MAC with another sender hardware address", pkt(arp.OperationRequest, clientMAC, vip4, vip4), ourMAC, claim{}, false},
		{"a reply from 0.0.0.0", pkt(arp.OperationReply, clientMAC, netip.IPv4Unspecified(), vip4), clientMAC, claim{}, false},
		{"nil", nil, clientMAC, claim{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := arpClaim(tc.p, tc.src, ourMAC)
			if ok != tc.ok {
				t.Errorf("ok = %v, want %v", ok, tc.ok)
			}
			if diff := cmp.Diff(tc.want, got, claimOpts); diff != "" {
				t.Errorf("claim (-want +got):\n%s", diff)
			}
		})
	}
}

// advertisement builds the frame of a Neighbor Advertisement for target
// carrying tll as its target link-layer address, sent from mac.
func advertisement(mac, tll net.HardwareAddr, src, target netip.Addr) []byte {
	na := &ndp.NeighborAdvertisement{Override: true, TargetAddress: target}
	if tll != nil {
		na.Options = []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: tll}}
	}
	return icmpFrame(na, mac, src, multicastMAC(allNodes), allNodes)
}

func TestNDPClaim(t *testing.T) {
	snm, _ := ndp.SolicitedNodeMulticast(vip6)
	otherMAC := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x65}
	tests := []struct {
		name  string
		frame []byte
		want  claim
		ok    bool
	}{
		{"advertisement from another host", advertisement(clientMAC, clientMAC, client6, vip6), claim{Address: vip6, MAC: clientMAC}, true},
		{"advertisement names its target's MAC", advertisement(clientMAC, otherMAC, client6, vip6), claim{Address: vip6, MAC: otherMAC}, true},
		{"advertisement without a link-layer option", advertisement(clientMAC, nil, client6, vip6), claim{Address: vip6, MAC: clientMAC}, true},
		{"our own advertisement", unsolicitedAdvertisement(vip6, ourMAC, linkLocal), claim{}, false},
		{"advertisement naming our MAC", advertisement(clientMAC, ourMAC, client6, vip6), claim{}, false},
		{"another host's DAD probe", solicitation(t, netip.IPv6Unspecified(), snm, vip6, multicastMAC(snm), 255), claim{Address: vip6, Probe: true, MAC: clientMAC}, true},
		{"our own DAD probe", dadProbe(vip6, ourMAC), claim{}, false},
		{"a solicitation claims its source", solicitation(t, client6, snm, vip6, multicastMAC(snm), 255), claim{Address: client6, MAC: clientMAC}, true},
		{"a solicitation from a link-local address", solicitation(t, linkLocal, snm, vip6, multicastMAC(snm), 255), claim{}, false},
		{"from off-link (hop limit 64)", solicitation(t, netip.IPv6Unspecified(), snm, vip6, multicastMAC(snm), 64), claim{}, false},
		{"garbage", []byte{1, 2, 3}, claim{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ndpClaim(tc.frame, ourMAC)
			if ok != tc.ok {
				t.Errorf("ok = %v, want %v", ok, tc.ok)
			}
			if diff := cmp.Diff(tc.want, got, claimOpts); diff != "" {
				t.Errorf("claim (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProbesAreWellFormed(t *testing.T) {
	p, err := arpProbe(vip4, ourMAC)
	if err != nil {
		t.Fatal(err)
	}
	if p.Operation != arp.OperationRequest || !p.SenderIP.IsUnspecified() || p.TargetIP != vip4 || !bytes.Equal(p.TargetHardwareAddr, make([]byte, 6)) {
		t.Errorf("ARP probe %+v", p)
	}
	frame := dadProbe(vip6, ourMAC)
	var f ethernet.Frame
	if err := f.UnmarshalBinary(frame); err != nil {
		t.Fatal(err)
	}
	snm, _ := ndp.SolicitedNodeMulticast(vip6)
	if !bytes.Equal(f.Destination, multicastMAC(snm)) || netip.AddrFrom16([16]byte(f.Payload[8:24])) != netip.IPv6Unspecified() ||
		netip.AddrFrom16([16]byte(f.Payload[24:40])) != snm || f.Payload[7] != 255 {
		t.Errorf("DAD probe to %v: %x", f.Destination, f.Payload[:40])
	}
	msg, err := ndp.ParseMessage(f.Payload[ipv6HeaderLen:])
	if err != nil {
		t.Fatal(err)
	}
	if ns, ok := msg.(*ndp.NeighborSolicitation); !ok || ns.TargetAddress != vip6 || len(ns.Options) != 0 {
		t.Errorf("DAD probe carries %+v", msg)
	}
}

// FuzzARPClaim: no packet makes the conflict parser panic, and none sent
// from our MAC is taken for another host's claim.
func FuzzARPClaim(f *testing.F) {
	probe, _ := arpProbe(vip4, clientMAC)
	grat, _ := arp.NewPacket(arp.OperationRequest, clientMAC, vip4, ethernet.Broadcast, vip4)
	for _, p := range []*arp.Packet{probe, grat} {
		b, _ := p.MarshalBinary()
		f.Add(b, []byte(clientMAC))
	}
	f.Fuzz(func(t *testing.T, b, src []byte) {
		var p arp.Packet
		if err := p.UnmarshalBinary(b); err != nil {
			return
		}
		c, ok := arpClaim(&p, src, ourMAC)
		if !ok {
			return
		}
		if bytes.Equal(c.MAC, ourMAC) || bytes.Equal(src, ourMAC) || !c.Address.Is4() || c.Address.IsUnspecified() {
			t.Fatalf("claim %+v from %x", c, src)
		}
	})
}

// FuzzNDPClaim: no frame makes the conflict parser panic, and none sent
// from our MAC or naming it is taken for another host's claim.
func FuzzNDPClaim(f *testing.F) {
	snm, _ := ndp.SolicitedNodeMulticast(vip6)
	f.Add(advertisement(clientMAC, clientMAC, client6, vip6))
	f.Add(solicitation(f, netip.IPv6Unspecified(), snm, vip6, multicastMAC(snm), 255))
	f.Add(dadProbe(vip6, ourMAC))
	f.Fuzz(func(t *testing.T, frame []byte) {
		c, ok := ndpClaim(frame, ourMAC)
		if !ok {
			return
		}
		if bytes.Equal(c.MAC, ourMAC) || bytes.Equal(frame[6:12], ourMAC) || !c.Address.Is6() || c.Address.IsUnspecified() {
			t.Fatalf("claim %+v", c)
		}
	})
}

// capture records the frames the speaker's side sends, as the client's
// namespace sees them.
type capture struct {
	mu     sync.Mutex
	frames [][]byte
}

func startCapture(t *testing.T, l *testenv.Link) *capture {
	t.Helper()
	var conn *packet.Conn
	err := testenv.InNetns(l.Client, func() error {
		ifi, err := net.InterfaceByName(l.ClientIf)
		if err != nil {
			return err
		}
		conn, err = packet.Listen(ifi, packet.Raw, etherTypeAll, nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	c := &capture{}
	done := make(chan struct{})
	var closed atomic.Bool
	t.Cleanup(func() { closed.Store(true); conn.Close(); <-done })
	speaker, _ := net.ParseMAC(l.SpeakerMAC)
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				if closed.Load() || errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			if n >= ethernetHeaderLen && bytes.Equal(buf[6:12], speaker) {
				c.mu.Lock()
				c.frames = append(c.frames, append([]byte(nil), buf[:n]...))
				c.mu.Unlock()
			}
		}
	}()
	return c
}

// claims counts the captured frames that claim ip (gratuitous ARP,
// replies, advertisements; not probes) and that probe for it.
func (c *capture) claims(ip netip.Addr) (claims, probes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	nobody := net.HardwareAddr{0, 0, 0, 0, 0, 0}
	for _, frame := range c.frames {
		var cl claim
		var ok bool
		if frame[12] == 0x08 && frame[13] == 0x06 {
			var p arp.Packet
			if p.UnmarshalBinary(frame[ethernetHeaderLen:]) == nil {
				cl, ok = arpClaim(&p, frame[6:12], nobody)
			}
		} else {
			cl, ok = ndpClaim(frame, nobody)
		}
		switch {
		case !ok || cl.Address != ip:
		case cl.Probe:
			probes++
		default:
			claims++
		}
	}
	return claims, probes
}

func (c *capture) reset() {
	c.mu.Lock()
	c.frames = nil
	c.mu.Unlock()
}

// conflicts collects a responder's conflict reports.
type conflicts chan Conflict

// none checks that r has neither reported (to c) nor counted a conflict;
// what says what must not have been taken for one.
func (c conflicts) none(t *testing.T, r *Responder, what string) {
	t.Helper()
	select {
	case got := <-c:
		t.Errorf("%s reported as a conflict: %+v", what, got)
	default:
	}
	if n := r.Stats.Conflicts.Load(); n != 0 {
		t.Errorf("%s: %d conflicts counted", what, n)
	}
}

func (c conflicts) wait(t *testing.T, kind ConflictKind, ip netip.Addr) Conflict {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case got := <-c:
			if got.Kind == kind && got.Address == ip {
				return got
			}
			t.Logf("conflict report %v %s %s", got.Kind, got.Address, got.MAC)
		case <-timeout:
			t.Fatalf("no %v conflict report for %s", kind, ip)
		}
	}
}

// clientUses gives the client vip: its kernel answers ARP probes and
// duplicate address detection for it.
func clientUses(l *testenv.Link, vip netip.Addr) {
	args := []string{"ip", "-n", l.Client, "addr", "add", withPrefix(vip), "dev", l.ClientIf}
	if vip.Is6() {
		args = append(args, "nodad")
	}
	l.Run(args...)
}

func withPrefix(ip netip.Addr) string {
	if ip.Is4() {
		return ip.String() + "/24"
	}
	return ip.String() + "/64"
}

func TestProbeFindsAddressInUse(t *testing.T) {
	for _, vip := range []netip.Addr{vip4, vip6} {
		t.Run(vip.String(), func(t *testing.T) {
			l := testenv.NewLink(t)
			clientUses(l, vip)
			capt := startCapture(t, l)
			reports := make(conflicts, 16)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			r := startResponder(ctx, t, l, Options{OnConflict: func(c Conflict) { reports <- c }, ReprobeInterval: 300 * time.Millisecond})
			if err := r.Announce(vip, AnnounceOptions{Probe: true}); err != nil {
				t.Fatal(err)
			}
			got := reports.wait(t, ConflictProbed, vip)
			if got.MAC.String() != "02:00:00:00:00:64" || got.Interface != l.SpeakerIf {
				t.Errorf("conflict names %s on %s, want the client's MAC on %s", got.MAC, got.Interface, l.SpeakerIf)
			}
			if r.Owns(vip) || !r.InConflict(vip) || r.Stats.Conflicts.Load() == 0 {
				t.Errorf("owns %v, in conflict %v, %d conflicts counted", r.Owns(vip), r.InConflict(vip), r.Stats.Conflicts.Load())
			}
			// Re-probes keep finding the client, and nothing claims the
			// address for us meanwhile.
			time.Sleep(time.Second)
			claims, probes := capt.claims(vip)
			t.Logf("while in conflict: %d probes sent, %d claims", probes, claims)
			if claims != 0 || probes < 2 {
				t.Errorf("while in conflict we sent %d claims (want none) and %d probes (want some)", claims, probes)
			}
			if n := r.Stats.ARPAnswers.Load() + r.Stats.NDPAnswers.Load() + r.Stats.Gratuitous.Load(); n != 0 {
				t.Errorf("sent %d answers or gratuitous announcements while in conflict", n)
			}
			select {
			case c := <-reports:
				t.Errorf("a re-probe finding the same host reported again: %+v", c)
			default:
			}

			// The client gives the address up: the next re-probe finds it
			// free and the responder answers.
			l.Run("ip", "-n", l.Client, "addr", "del", withPrefix(vip), "dev", l.ClientIf)
			reports.wait(t, ConflictResolved, vip)
			if !r.Owns(vip) || r.InConflict(vip) {
				t.Errorf("after the conflict: owns %v, in conflict %v", r.Owns(vip), r.InConflict(vip))
			}
			l.Touch(vip)
			l.WaitNeighbour(t, vip, "our MAC", testenv.ReachableAt(l.SpeakerMAC))
		})
	}
}

func TestProbeFreeAddress(t *testing.T) {
	l := testenv.NewLink(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reports := make(conflicts, 16)
	capt := startCapture(t, l)
	r := startResponder(ctx, t, l, Options{OnConflict: func(c Conflict) { reports <- c }})
	for _, vip := range []netip.Addr{vip4, vip6} {
		start := time.Now()
		if err := r.Announce(vip, AnnounceOptions{Probe: true}); err != nil {
			t.Fatal(err)
		}
		if r.Owns(vip) {
			t.Errorf("%s answered before its probe ended", vip)
		}
		for !r.Owns(vip) {
			if time.Since(start) > 5*time.Second {
				t.Fatalf("%s not answered 5 s after a probe of a free address", vip)
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("%s answered %v after Announce", vip, time.Since(start).Round(time.Millisecond))
		l.Touch(vip)
		l.WaitNeighbour(t, vip, "our MAC", testenv.ReachableAt(l.SpeakerMAC))
		if _, probes := capt.claims(vip); probes != probeCount {
			t.Errorf("%s: %d probes seen, want %d", vip, probes, probeCount)
		}
	}
	reports.none(t, r, "a free address")
}

// sendFrom sends frames from the client's side of the link.
func sendFrom(t *testing.T, l *testenv.Link, frames ...[]byte) {
	t.Helper()
	err := testenv.InNetns(l.Client, func() error {
		ifi, err := net.InterfaceByName(l.ClientIf)
		if err != nil {
			return err
		}
		conn, err := packet.Listen(ifi, packet.Raw, etherTypeAll, nil)
		if err != nil {
			return err
		}
		defer conn.Close()
		for _, f := range frames {
			if _, err := conn.WriteTo(f, &packet.Addr{HardwareAddr: f[0:6]}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func gratuitousARPFrame(t *testing.T, mac net.HardwareAddr, ip netip.Addr) []byte {
	t.Helper()
	p, err := arp.NewPacket(arp.OperationRequest, mac, ip, ethernet.Broadcast, ip)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	fb, err := (&ethernet.Frame{Destination: ethernet.Broadcast, Source: mac, EtherType: ethernet.EtherTypeARP, Payload: pb}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return fb
}

func TestConflictSeenWhileAnswering(t *testing.T) {
	l := testenv.NewLink(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reports := make(conflicts, 16)
	capt := startCapture(t, l)
	r := startResponder(ctx, t, l, Options{OnConflict: func(c Conflict) { reports <- c }})
	for _, vip := range []netip.Addr{vip4, vip6} {
		if err := r.Announce(vip, AnnounceOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1500 * time.Millisecond) // the gratuitous bursts end
	capt.reset()
	before := r.Stats.Conflicts.Load()
	frames := map[netip.Addr][]byte{
		vip4: gratuitousARPFrame(t, clientMAC, vip4),
		vip6: advertisement(clientMAC, clientMAC, client6, vip6),
	}
	for _, vip := range []netip.Addr{vip4, vip6} {
		sendFrom(t, l, frames[vip])
		got := reports.wait(t, ConflictSeen, vip)
		if !bytes.Equal(got.MAC, clientMAC) || got.Interface != l.SpeakerIf {
			t.Errorf("%s: conflict names %s on %s", vip, got.MAC, got.Interface)
		}
		if !r.Owns(vip) {
			t.Errorf("%s no longer answered after another host claimed it", vip)
		}
	}
	if n := r.Stats.Conflicts.Load() - before; n != 2 {
		t.Errorf("%d conflicts counted, want 2", n)
	}
	// The responder defended both addresses with a gratuitous
	// announcement.
	testutil.Eventually(t, 5*time.Second, "both addresses defended", func() (bool, string) {
		for _, vip := range []netip.Addr{vip4, vip6} {
			if claims, _ := capt.claims(vip); claims == 0 {
				return false, vip.String() + " not defended"
			}
		}
		return true, ""
	})
	// A second claim within defendInterval is neither reported nor
	// defended again: no storm between two hosts that both claim.
	sendFrom(t, l, frames[vip4], frames[vip6])
	time.Sleep(300 * time.Millisecond)
	select {
	case c := <-reports:
		t.Errorf("second claim reported within the defend interval: %+v", c)
	default:
	}
}

func TestPeriodicGratuitous(t *testing.T) {
	l := testenv.NewLink(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	capt := startCapture(t, l)
	r := startResponder(ctx, t, l, Options{GratuitousInterval: 200 * time.Millisecond})
	for _, vip := range []netip.Addr{vip4, vip6} {
		if err := r.Announce(vip, AnnounceOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1500 * time.Millisecond) // the burst on announcing ends
	capt.reset()
	time.Sleep(1500 * time.Millisecond)
	for _, vip := range []netip.Addr{vip4, vip6} {
		claims, _ := capt.claims(vip)
		t.Logf("%s: %d gratuitous announcements in 1.5 s at a 200 ms interval", vip, claims)
		// Generous: a loaded machine may skip ticks.
		if claims < 3 {
			t.Errorf("%s: %d gratuitous announcements in 1.5 s, want several", vip, claims)
		}
	}
}

// otherSpeaker is Options.Speaker for a link where the client's MAC is
// another barelb speaker's.
func otherSpeaker(mac net.HardwareAddr) (string, bool) {
	if bytes.Equal(mac, clientMAC) {
		return "node-b", true
	}
	return "", false
}

// TestProbeAnsweredBySpeaker: when the host answering a probe is another
// barelb speaker (one still answering during a hand-over), the address is
// not in conflict: it is announced after the probe, nothing is reported.
func TestProbeAnsweredBySpeaker(t *testing.T) {
	for _, vip := range []netip.Addr{vip4, vip6} {
		t.Run(vip.String(), func(t *testing.T) {
			l := testenv.NewLink(t)
			clientUses(l, vip)
			reports := make(conflicts, 16)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			r := startResponder(ctx, t, l, Options{OnConflict: func(c Conflict) { reports <- c }, Speaker: otherSpeaker})
			if err := r.Announce(vip, AnnounceOptions{Probe: true}); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 5*time.Second, vip.String()+" answered after a probe that only another speaker answered", func() (bool, string) {
				return r.Owns(vip), fmt.Sprintf("not answered, in conflict: %v", r.InConflict(vip))
			})
			reports.none(t, r, "another speaker's answer")
		})
	}
}

// TestSpeakerClaimWhileAnswering: another speaker's gratuitous
// announcement of an answered address is neither reported, counted nor
// defended (the election settles it; a defence would fight the winner).
func TestSpeakerClaimWhileAnswering(t *testing.T) {
	l := testenv.NewLink(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reports := make(conflicts, 16)
	capt := startCapture(t, l)
	r := startResponder(ctx, t, l, Options{OnConflict: func(c Conflict) { reports <- c }, Speaker: otherSpeaker})
	for _, vip := range []netip.Addr{vip4, vip6} {
		if err := r.Announce(vip, AnnounceOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1500 * time.Millisecond) // the gratuitous bursts end
	capt.reset()
	sendFrom(t, l, gratuitousARPFrame(t, clientMAC, vip4), advertisement(clientMAC, clientMAC, client6, vip6))
	time.Sleep(500 * time.Millisecond)
	reports.none(t, r, "another speaker's claim")
	for _, vip := range []netip.Addr{vip4, vip6} {
		if claims, _ := capt.claims(vip); claims != 0 {
			t.Errorf("%s: %d claims sent back to another speaker, want none", vip, claims)
		}
		if !r.Owns(vip) {
			t.Errorf("%s no longer answered", vip)
		}
	}
}

// TestYieldUntilTheOtherSpeakerStops: another speaker's claim on an
// answered address is told to OnPeerClaim; once yielded, the address is
// not answered while that speaker keeps claiming it, and is taken over,
// with gratuitous announcements, soon after it stops.
func TestYieldUntilTheOtherSpeakerStops(t *testing.T) {
	for _, vip := range []netip.Addr{vip4, vip6} {
		t.Run(vip.String(), func(t *testing.T) {
			l := testenv.NewLink(t)
			reports := make(conflicts, 16)
			peers := make(chan PeerClaim, 64)
			probed := make(chan netip.Addr, 4)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			capt := startCapture(t, l)
			r := startResponder(ctx, t, l, Options{
				OnConflict: func(c Conflict) { reports <- c }, Speaker: otherSpeaker,
				OnPeerClaim: func(c PeerClaim) {
					select {
					case peers <- c:
					default:
					}
				},
				OnProbed: func(ip netip.Addr) { probed <- ip },
			})
			if err := r.Announce(vip, AnnounceOptions{}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(1200 * time.Millisecond) // the gratuitous burst ends
			claim := advertisement(clientMAC, clientMAC, client6, vip)
			if vip.Is4() {
				claim = gratuitousARPFrame(t, clientMAC, vip)
			}
			sendFrom(t, l, claim)
			select {
			case got := <-peers:
				want := PeerClaim{Address: vip, Interface: l.SpeakerIf, MAC: clientMAC, Node: "node-b", Answering: true}
				if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
					t.Errorf("peer claim (-want +got):\n%s", diff)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("another speaker's claim was not told to OnPeerClaim")
			}

			// "node-b" answers on: a claim every 40 ms, more often than
			// the responder's probe rounds.
			stopClaims := make(chan struct{})
			claiming := make(chan struct{})
			go func() {
				defer close(claiming)
				for {
					select {
					case <-stopClaims:
						return
					case <-time.After(40 * time.Millisecond):
						sendFrom(t, l, claim)
					}
				}
			}()
			if !r.Yield(vip) {
				t.Fatal("Yield of an answered address did nothing")
			}
			capt.reset()
			time.Sleep(1500 * time.Millisecond)
			if r.Owns(vip) || !r.Yielded(vip) {
				t.Fatalf("answered again (owns %v, yielded %v) while the other speaker still answers", r.Owns(vip), r.Yielded(vip))
			}
			if claims, probes := capt.claims(vip); claims != 0 || probes < 2 {
				t.Errorf("while yielded: %d claims sent (want none), %d probes (want several)", claims, probes)
			}

			close(stopClaims)
			<-claiming
			start := time.Now()
			select {
			case ip := <-probed:
				t.Logf("%s taken over %v after the other speaker stopped answering", ip, time.Since(start).Round(time.Millisecond))
			case <-time.After(5 * time.Second):
				t.Fatal("not taken over 5 s after the other speaker stopped answering")
			}
			if !r.Owns(vip) || r.Yielded(vip) {
				t.Errorf("after the take-over: owns %v, yielded %v", r.Owns(vip), r.Yielded(vip))
			}
			time.Sleep(300 * time.Millisecond)
			if claims, _ := capt.claims(vip); claims == 0 {
				t.Error("taken over without a gratuitous announcement")
			}
			reports.none(t, r, "another speaker's claims while yielded")
		})
	}
}

// TestResumeAYieldedAddress: Resume answers again at once, with a
// gratuitous announcement.
func TestResumeAYieldedAddress(t *testing.T) {
	l := testenv.NewLink(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	capt := startCapture(t, l)
	r := startResponder(ctx, t, l, Options{Speaker: otherSpeaker})
	if err := r.Announce(vip4, AnnounceOptions{}); err != nil {
		t.Fatal(err)
	}
	if r.Resume(vip4) {
		t.Error("Resume of an answered address did something")
	}
	if !r.Yield(vip4) || r.Yield(vip4) {
		t.Fatal("Yield: want true once, then false")
	}
	time.Sleep(500 * time.Millisecond)
	capt.reset()
	if !r.Resume(vip4) || !r.Owns(vip4) {
		t.Fatal("Resume did not answer the address again")
	}
	time.Sleep(100 * time.Millisecond)
	if claims, _ := capt.claims(vip4); claims == 0 {
		t.Error("resumed without a gratuitous announcement")
	}
}

// TestYieldWhileProbing: an address being probed that another speaker
// turns out to answer is yielded before it was ever answered: no
// gratuitous announcement goes out (so no neighbour is pointed here), the
// link is watched, and the address is taken over once that speaker is
// quiet. A speaker cut off from the others' gossip probes what it takes
// over this way.
func TestYieldWhileProbing(t *testing.T) {
	for _, vip := range []netip.Addr{vip4, vip6} {
		t.Run(vip.String(), func(t *testing.T) {
			l := testenv.NewLink(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			capt := startCapture(t, l)
			probed := make(chan netip.Addr, 4)
			r := startResponder(ctx, t, l, Options{Speaker: otherSpeaker, OnProbed: func(ip netip.Addr) { probed <- ip }})
			if err := r.Announce(vip, AnnounceOptions{Probe: true}); err != nil {
				t.Fatal(err)
			}
			if !r.Yield(vip) {
				t.Fatal("Yield of an address being probed did nothing")
			}
			if r.Yield(vip) {
				t.Error("Yield of a yielded address did something")
			}
			// "node-b" answers on for a while.
			claim := advertisement(clientMAC, clientMAC, client6, vip)
			if vip.Is4() {
				claim = gratuitousARPFrame(t, clientMAC, vip)
			}
			for range 15 {
				sendFrom(t, l, claim)
				time.Sleep(40 * time.Millisecond)
			}
			if r.Owns(vip) || !r.Yielded(vip) {
				t.Fatalf("owns %v, yielded %v while the other speaker answers", r.Owns(vip), r.Yielded(vip))
			}
			if claims, probes := capt.claims(vip); claims != 0 || probes == 0 {
				t.Errorf("%d gratuitous announcements (want none: it was never answered), %d probes (want some)", claims, probes)
			}
			select {
			case <-probed:
			case <-time.After(5 * time.Second):
				t.Fatal("not taken over 5 s after the other speaker went quiet")
			}
			if !r.Owns(vip) {
				t.Error("not answered after the take-over")
			}
		})
	}
}

// etherTypeAll makes a packet socket capture every frame (Linux's
// ETH_P_ALL).
const etherTypeAll = 0x0003

// TestLeave: a responder whose speaker stops announces nothing any more
// (no periodic, scheduled or defending announcement), answers requests
// until another host claims an address, and then no longer answers that
// one, without telling OnPeerClaim.
func TestLeave(t *testing.T) {
	l := testenv.NewLink(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	capt := startCapture(t, l)
	var peerClaims atomic.Int32
	r := startResponder(ctx, t, l, Options{GratuitousInterval: 200 * time.Millisecond, Speaker: otherSpeaker,
		OnPeerClaim: func(PeerClaim) { peerClaims.Add(1) }})
	for _, vip := range []netip.Addr{vip4, vip6} {
		if err := r.Announce(vip, AnnounceOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Leaving in the middle of the burst on announcing.
	time.Sleep(100 * time.Millisecond)
	r.Leave()
	capt.reset()
	for _, vip := range []netip.Addr{vip4, vip6} {
		r.Reannounce(vip) // what defending an address does
	}
	time.Sleep(1500 * time.Millisecond)
	for _, vip := range []netip.Addr{vip4, vip6} {
		if claims, _ := capt.claims(vip); claims != 0 {
			t.Errorf("%s: %d announcements after Leave, want none", vip, claims)
		}
		if !r.Owns(vip) {
			t.Errorf("%s no longer answered after Leave, before anyone claimed it", vip)
		}
	}
	reachableOurs := testenv.ReachableAt(l.SpeakerMAC)
	l.FlushNeighbour(vip6)
	l.Touch(vip6)
	l.WaitNeighbour(t, vip6, "our MAC: requests are answered during the hand-over", reachableOurs)

	// The successor (the client here, another speaker by its MAC) claims
	// the IPv4 address.
	l.ClientClaims(vip4)
	deadline := time.Now().Add(2 * time.Second)
	for r.Owns(vip4) {
		if time.Now().After(deadline) {
			t.Fatal("still answering for an address the successor claimed during the hand-over")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !r.Owns(vip6) {
		t.Error("stopped answering an address nobody claimed")
	}
	if n := peerClaims.Load(); n != 0 {
		t.Errorf("OnPeerClaim told %d times during the hand-over, want 0", n)
	}
}
