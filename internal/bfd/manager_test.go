package bfd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/barelb/barelb/internal/testenv"
	"github.com/barelb/barelb/internal/testutil"
)

// TestManagers runs two of our Managers against each other, one in each
// namespace: up, the peer removing its session (AdminDown, not a
// failure), re-added, and the peer's manager stopping dead (a failure,
// detected in about 300 ms).
func TestManagers(t *testing.T) {
	passive := fastProfile
	passive.Passive = true
	for _, tc := range []struct {
		name         string
		a, b         netip.Addr
		profA, profB Profile
	}{
		{"IPv4", addrA4, addrB4, fastProfile, fastProfile},
		{"IPv6 with a passive side", addrA6, addrB6, fastProfile, passive},
		{"IPv6 link-local", llA, llB, fastProfile, fastProfile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t)
			ma, evA := startManager(t, l.nsA, testLog(t).WithName("a"))
			mb, evB := startManager(t, l.nsB, testLog(t).WithName("b"))
			pa := Peer{Local: tc.a, Remote: tc.b, Interface: l.ifA, Profile: tc.profA}
			pb := Peer{Local: tc.b, Remote: tc.a, Interface: l.ifB, Profile: tc.profB}
			for _, add := range []struct {
				m *Manager
				p Peer
			}{{mb, pb}, {ma, pa}} {
				if err := add.m.Add(context.Background(), add.p); err != nil {
					t.Fatal(err)
				}
			}
			ka, kb := pa.Key(), pb.Key()
			evA.wait(t, ka, StateUp, upTimeout)
			evB.wait(t, kb, StateUp, upTimeout)
			waitSettled(t, mb, kb, 100*time.Millisecond, 300*time.Millisecond)
			settle(t, ma, evA, ka, 100*time.Millisecond, 300*time.Millisecond)
			if got, want := info(t, ma, ka).RemoteDiscriminator, info(t, mb, kb).LocalDiscriminator; got != want {
				t.Errorf("a knows b as %d, b is %d", got, want)
			}

			// b removes its session: a goes Down, told AdminDown.
			removed := time.Now()
			mb.Remove(kb)
			down := evA.next(t, ka, removed, detectTimeout, "Down on b's AdminDown", func(c Change) bool {
				return c.To == StateDown && c.RemoteState == StateAdminDown
			})
			if down.Diag != DiagNeighborSignaledDown || down.RemoteState != StateAdminDown || down.RemoteDiag != DiagAdminDown || down.PeerFailed() {
				t.Errorf("a after b's Remove: %+v, PeerFailed %v", down.Transition, down.PeerFailed())
			}
			if err := mb.Add(context.Background(), pb); err != nil {
				t.Fatal(err)
			}
			evA.wait(t, ka, StateUp, upTimeout)
			settle(t, ma, evA, ka, 100*time.Millisecond, 300*time.Millisecond)

			// b's manager stops dead.
			stopped := time.Now()
			mb.Close()
			down = evA.waitAfter(t, ka, StateDown, stopped, detectTimeout)
			d := down.At.Sub(stopped)
			t.Logf("%s: peer manager stopped -> Down in %v (diag %s)", tc.name, d.Round(time.Millisecond), down.Diag)
			if down.Diag != DiagControlDetectionExpired || !down.PeerFailed() {
				t.Errorf("a after b stopped: %+v", down.Transition)
			}
			if d > time.Second {
				t.Errorf("detection took %v, want about 300 ms", d)
			}
		})
	}
}

// TestReceiveChecks sends hand-made datagrams to a Manager's listener:
// only TTL 255, well-formed packets from the peer's address reach the
// session (RFC 5881 §5, RFC 5880 §6.8.6).
func TestReceiveChecks(t *testing.T) {
	l := newLab(t)
	m, _ := startManager(t, l.nsA, testLog(t))
	passive := fastProfile
	passive.Passive = true // so that it says nothing back
	for _, p := range []Peer{
		{Local: addrA4, Remote: addrB4, Profile: passive},
		{Local: addrA6, Remote: addrB6, Profile: passive},
	} {
		if err := m.Add(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	down, err := Packet{State: StateDown, DetectMult: 3, MyDiscriminator: 42, DesiredMinTxInterval: time.Second, RequiredMinRxInterval: time.Second}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	withAuth := append(append([]byte(nil), down...), 2, 24, 1, 0, 0, 0, 0, 1)
	withAuth = append(withAuth, make([]byte, 16)...)
	withAuth[1] |= flagAuth
	withAuth[3] = byte(len(withAuth))

	for _, fam := range []struct {
		name     string
		src, dst netip.Addr
	}{{"IPv4", addrB4, addrA4}, {"IPv6", addrB6, addrA6}} {
		k := Key{Local: fam.dst, Remote: fam.src}
		before := m.Stats()
		send(t, l.nsB, fam.src, fam.dst, 64, down)
		send(t, l.nsB, fam.src, fam.dst, 255, down[:20])
		send(t, l.nsB, fam.src, fam.dst, 255, withAuth)
		testutil.Eventually(t, 5*time.Second, fam.name+": drops counted", func() (bool, string) {
			s := m.Stats()
			return s.BadTTL == before.BadTTL+1 && s.Malformed == before.Malformed+2, fmt.Sprintf("bad TTL %d, malformed %d", s.BadTTL, s.Malformed)
		})
		if s := info(t, m, k); s.State != StateDown || s.Stats.PacketsIn != 0 {
			t.Fatalf("%s: a dropped packet reached the session: %+v", fam.name, s.Info)
		}
		send(t, l.nsB, fam.src, fam.dst, 255, down)
		testutil.Eventually(t, 5*time.Second, fam.name+": a valid packet moves the session to Init", func() (bool, string) {
			s := info(t, m, k).State
			return s == StateInit, s.String()
		})
		t.Logf("%s: %+v", fam.name, m.Stats())
	}
}

// send sends one UDP datagram from namespace ns with the given TTL or hop
// limit to port 3784.
func send(t *testing.T, ns string, src, dst netip.Addr, ttl int, b []byte) {
	t.Helper()
	err := testenv.InNetns(ns, func() error {
		network := "udp4"
		if src.Is6() {
			network = "udp6"
		}
		c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
		if err != nil {
			return err
		}
		defer c.Close()
		if src.Is4() {
			err = ipv4.NewConn(c).SetTTL(ttl)
		} else {
			err = ipv6.NewConn(c).SetHopLimit(ttl)
		}
		if err != nil {
			return err
		}
		_, err = c.WriteToUDPAddrPort(b, netip.AddrPortFrom(dst, ControlPort))
		return err
	})
	if err != nil {
		t.Fatalf("sending from %s: %v", src, err)
	}
}

func TestAddErrors(t *testing.T) {
	l := newLab(t)
	m, _ := startManager(t, l.nsA, testLog(t))
	tests := []struct {
		name    string
		peer    Peer
		wantErr error
	}{
		{"no remote", Peer{Local: addrA4, Profile: fastProfile}, ErrPeer},
		{"mixed families", Peer{Local: addrA4, Remote: addrB6, Profile: fastProfile}, ErrPeer},
		{"link-local without interface", Peer{Local: llA, Remote: llB, Profile: fastProfile}, ErrPeer},
		{"zero profile", Peer{Local: addrA4, Remote: addrB4}, ErrProfile},
		{"local address not on the host", Peer{Local: netip.MustParseAddr("203.0.113.1"), Remote: addrB4, Profile: fastProfile}, nil},
		{"unknown interface", Peer{Local: addrA4, Remote: addrB4, Interface: "nonesuch0", Profile: fastProfile}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := m.Add(context.Background(), tc.peer)
			if err == nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			t.Log(err)
		})
	}
	if n := len(m.Sessions()); n != 0 {
		t.Errorf("%d sessions after failed Adds", n)
	}
	// Add is idempotent; Remove of an unknown key is a no-op.
	p := Peer{Local: addrA4, Remote: addrB4, Profile: fastProfile}
	for i := 0; i < 2; i++ {
		if err := m.Add(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(m.Sessions()); n != 1 {
		t.Errorf("%d sessions after adding one twice", n)
	}
	m.Remove(Key{Local: addrA4, Remote: addrB4.Next()})
	m.Close()
	if err := m.Add(context.Background(), Peer{Local: addrA6, Remote: addrB6, Profile: fastProfile}); err == nil {
		t.Error("Add after Close succeeded")
	}
}

func ExampleManager() {
	ctx := context.Background()
	m, err := Start(ctx, Options{
		OnChange: func(c Change) {
			switch {
			case c.PeerFailed():
				// The BGP layer takes its session with c.Peer.Remote
				// down at once instead of waiting for the hold timer
				// (GoBGP: DisablePeer with a Communication naming BFD),
				// and lets it up again when BFD is Up (EnablePeer).
				fmt.Println("peer down:", c.Peer.Remote, c.Diag)
			case c.To == StateUp:
				fmt.Println("peer up:", c.Peer.Remote)
			}
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()
	err = m.Add(ctx, Peer{
		Local:   netip.MustParseAddr("198.51.100.1"),
		Remote:  netip.MustParseAddr("198.51.100.2"),
		Profile: DefaultProfile(),
	})
	if err != nil {
		fmt.Println(err)
	}
}

// TestSharedListener runs three sessions at once between the same two
// managers (IPv4, IPv6, IPv6 link-local): each comes Up on its own
// discriminator and source port, and removing one leaves the others Up.
func TestSharedListener(t *testing.T) {
	l := newLab(t)
	ma, evA := startManager(t, l.nsA, testLog(t).WithName("a"))
	mb, _ := startManager(t, l.nsB, testLog(t).WithName("b"))
	pairs := [][2]netip.Addr{{addrA4, addrB4}, {addrA6, addrB6}, {llA, llB}}
	var keys []Key
	for _, ab := range pairs {
		pa := Peer{Local: ab[0], Remote: ab[1], Interface: l.ifA, Profile: fastProfile}
		pb := Peer{Local: ab[1], Remote: ab[0], Interface: l.ifB, Profile: fastProfile}
		if err := ma.Add(context.Background(), pa); err != nil {
			t.Fatal(err)
		}
		if err := mb.Add(context.Background(), pb); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, pa.Key())
	}
	for _, k := range keys {
		waitSettled(t, ma, k, 100*time.Millisecond, 300*time.Millisecond)
	}
	discrs, ports := map[uint32]bool{}, map[uint16]bool{}
	for _, s := range ma.Sessions() {
		discrs[s.LocalDiscriminator] = true
	}
	for _, s := range ma.byKeySnapshot() {
		ports[s.port] = true
	}
	if len(discrs) != 3 || len(ports) != 3 {
		t.Fatalf("discriminators %v, ports %v: want three distinct of each", discrs, ports)
	}
	for len(evA) > 0 {
		<-evA
	}
	removed := time.Now()
	mb.Remove(Key{Local: addrB6, Remote: addrA6, Interface: l.ifB})
	down := evA.next(t, keys[1], removed, detectTimeout, "Down on b's AdminDown", func(c Change) bool {
		return c.To == StateDown && c.RemoteState == StateAdminDown
	})
	if down.RemoteState != StateAdminDown {
		t.Errorf("removed session: %+v", down.Transition)
	}
	evA.noAdminDown(t, time.Second, keys[0], keys[2])
}

// byKeySnapshot lists the sessions (test helper).
func (m *Manager) byKeySnapshot() []*session {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*session
	for _, s := range m.byKey {
		out = append(out, s)
	}
	return out
}

// TestCallbackMayCallManager: OnChange runs on the session's goroutine;
// calling Remove and Add from it must not deadlock.
func TestCallbackMayCallManager(t *testing.T) {
	l := newLab(t)
	mb, _ := startManager(t, l.nsB, testLog(t).WithName("b"))
	if err := mb.Add(context.Background(), Peer{Local: addrB4, Remote: addrA4, Profile: fastProfile}); err != nil {
		t.Fatal(err)
	}
	var ma *Manager
	done := make(chan error, 1)
	pa := Peer{Local: addrA4, Remote: addrB4, Profile: fastProfile}
	ma, err := Start(context.Background(), Options{
		Log:        testLog(t).WithName("a"),
		OpenSocket: func(open func() error) error { return testenv.InNetns(l.nsA, open) },
		OnChange: func(c Change) {
			if c.To != StateUp {
				return
			}
			slower := pa
			slower.Profile.TransmitInterval = 200 * time.Millisecond
			err := ma.Add(context.Background(), slower)
			ma.Remove(c.Peer)
			done <- err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ma.Close)
	if err := ma.Add(context.Background(), pa); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(upTimeout):
		t.Fatal("the callback never ran or blocked")
	}
	testutil.Eventually(t, 5*time.Second, "the session is gone", func() (bool, string) {
		n := len(ma.Sessions())
		return n == 0, fmt.Sprintf("%d sessions", n)
	})
}

// TestReAddWhileDraining: a session removed and added again at once must
// not be taken down by the removed one, which is still telling the peer
// AdminDown, as the peer keeps its discriminator (FRR does).
func TestReAddWhileDraining(t *testing.T) {
	l := newLab(t)
	ma, evA := startManager(t, l.nsA, testLog(t).WithName("a"))
	mb, evB := startManager(t, l.nsB, testLog(t).WithName("b"))
	pa := Peer{Local: addrA4, Remote: addrB4, Profile: fastProfile}
	pb := Peer{Local: addrB4, Remote: addrA4, Profile: fastProfile}
	for _, add := range []struct {
		m *Manager
		p Peer
	}{{mb, pb}, {ma, pa}} {
		if err := add.m.Add(context.Background(), add.p); err != nil {
			t.Fatal(err)
		}
	}
	ka, kb := pa.Key(), pb.Key()
	waitSettled(t, ma, ka, 100*time.Millisecond, 300*time.Millisecond)
	for i := 0; i < 3; i++ {
		readded := time.Now()
		ma.Remove(ka)
		time.Sleep(50 * time.Millisecond) // the peer hears AdminDown and goes Down
		if err := ma.Add(context.Background(), pa); err != nil {
			t.Fatal(err)
		}
		evA.waitAfter(t, ka, StateUp, readded, upTimeout)
		evB.waitAfter(t, kb, StateUp, readded, upTimeout)
		// The removed session sent AdminDown for up to 3 s; it must have
		// stopped.
		evB.noAdminDown(t, 1500*time.Millisecond, kb)
	}
}
