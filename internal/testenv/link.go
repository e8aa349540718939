package testenv

import (
	"fmt"
	"math/rand"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
)

// Link is a speaker and a client network namespace joined by a veth pair,
// as a node and a laptop on one LAN: 198.51.100.1 and 2001:db8:100::1 on
// the speaker's side, .100 and ::100 on the client's. Both are removed
// when the test ends.
type Link struct {
	t                   testing.TB
	Speaker, Client     string // namespace names
	SpeakerIf, ClientIf string
	SpeakerMAC          string
}

// NewLink makes a Link. It needs root; a test run with -short skips it.
func NewLink(t testing.TB) *Link {
	t.Helper()
	if testing.Short() {
		t.Skip("makes network namespaces, which needs root")
	}
	if os.Geteuid() != 0 {
		t.Fatal("this test makes network namespaces and must run as root (CI does)")
	}
	prefix := fmt.Sprintf("l2t%04x", rand.Intn(1<<16))
	l := &Link{t: t, Speaker: prefix + "-s", Client: prefix + "-c", SpeakerIf: prefix + "s", ClientIf: prefix + "c", SpeakerMAC: "02:00:00:00:00:01"}
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", l.Speaker).Run()
		_ = exec.Command("ip", "netns", "del", l.Client).Run()
	})
	l.Run("ip", "netns", "add", l.Speaker)
	l.Run("ip", "netns", "add", l.Client)
	l.connect()
	return l
}

// Recreate deletes the veth pair and makes it again, the speaker's end
// with another MAC: an interface that comes and goes (a NIC replaced, a
// bond or VLAN made again by the network configuration).
func (l *Link) Recreate(speakerMAC string) {
	l.t.Helper()
	l.Run("ip", "-n", l.Speaker, "link", "del", l.SpeakerIf)
	l.SpeakerMAC = speakerMAC
	l.connect()
}

// connect makes the veth pair and configures both ends.
func (l *Link) connect() {
	l.t.Helper()
	l.Run("ip", "link", "add", l.SpeakerIf, "netns", l.Speaker, "address", l.SpeakerMAC, "type", "veth",
		"peer", "name", l.ClientIf, "netns", l.Client, "address", ClientMAC)
	for _, c := range [][]string{
		{l.Speaker, "ip", "addr", "add", "198.51.100.1/24", "dev", l.SpeakerIf},
		{l.Speaker, "ip", "addr", "add", "2001:db8:100::1/64", "dev", l.SpeakerIf, "nodad"},
		{l.Speaker, "ip", "link", "set", l.SpeakerIf, "up"},
		{l.Client, "ip", "addr", "add", "198.51.100.100/24", "dev", l.ClientIf},
		{l.Client, "ip", "addr", "add", "2001:db8:100::100/64", "dev", l.ClientIf, "nodad"},
		{l.Client, "ip", "link", "set", l.ClientIf, "up"},
		// The client re-checks a stale entry after 1 s instead of 5 s.
		{l.Client, "sysctl", "-qw", "net.ipv6.neigh." + l.ClientIf + ".delay_first_probe_time=1"},
		{l.Client, "sysctl", "-qw", "net.ipv4.neigh." + l.ClientIf + ".delay_first_probe_time=1"},
	} {
		l.Run(append([]string{"ip", "netns", "exec"}, c...)...)
	}
	// The kernel's IPv6 link-local address appears a moment after up.
	time.Sleep(100 * time.Millisecond)
}

// Run runs a command and fails the test if it fails.
func (l *Link) Run(args ...string) string {
	l.t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// InSpeaker runs f on a thread inside the speaker's namespace; sockets f
// opens stay there.
func (l *Link) InSpeaker(f func() error) error { return InNetns(l.Speaker, f) }

// Touch makes the client's kernel resolve ip by sending it a datagram.
func (l *Link) Touch(ip netip.Addr) {
	_ = exec.Command("ip", "netns", "exec", l.Client, "bash", "-c", fmt.Sprintf("echo x > /dev/udp/%s/9", ip)).Run()
}

// Neighbour returns the client's neighbour entry for ip.
func (l *Link) Neighbour(ip netip.Addr) string {
	return strings.TrimSpace(l.Run("ip", "-n", l.Client, "neigh", "show", ip.String()))
}

// SetNeighbour sets the client's entry for ip to mac in state nud.
func (l *Link) SetNeighbour(ip netip.Addr, mac, nud string) {
	l.Run("ip", "-n", l.Client, "neigh", "replace", ip.String(), "lladdr", mac, "nud", nud, "dev", l.ClientIf)
}

// FlushNeighbour forgets the client's entry for ip.
func (l *Link) FlushNeighbour(ip netip.Addr) {
	l.Run("ip", "-n", l.Client, "neigh", "flush", "to", ip.String())
}

// WaitNeighbour waits up to 5 s until the client's entry for ip satisfies
// ok.
func (l *Link) WaitNeighbour(t testing.TB, ip netip.Addr, what string, ok func(entry string) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		entry := l.Neighbour(ip)
		if ok(entry) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("client's entry for %s: %q, want %s", ip, entry, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ResolvesTo tells whether a neighbour entry points at mac.
func ResolvesTo(mac string) func(string) bool {
	return func(entry string) bool { return strings.Contains(entry, "lladdr "+mac) }
}

// ReachableAt tells whether a neighbour entry points at mac and is
// REACHABLE.
func ReachableAt(mac string) func(string) bool {
	return func(entry string) bool {
		return strings.Contains(entry, "lladdr "+mac) && strings.Contains(entry, "REACHABLE")
	}
}

// ClientMAC is the client's MAC address on a Link.
const ClientMAC = "02:00:00:00:00:64"

// etherTypeARP is ARP's EtherType (ETH_P_ARP).
const etherTypeARP = 0x0806

// ClientClaims makes the client announce the IPv4 address ip as its own
// with a gratuitous ARP request, as another speaker taking the address
// over does.
func (l *Link) ClientClaims(ip netip.Addr) {
	l.t.Helper()
	mac, _ := net.ParseMAC(ClientMAC)
	p, err := arp.NewPacket(arp.OperationRequest, mac, ip, ethernet.Broadcast, ip)
	if err != nil {
		l.t.Fatal(err)
	}
	payload, err := p.MarshalBinary()
	if err != nil {
		l.t.Fatal(err)
	}
	frame, err := (&ethernet.Frame{Destination: ethernet.Broadcast, Source: mac, EtherType: ethernet.EtherTypeARP, Payload: payload}).MarshalBinary()
	if err != nil {
		l.t.Fatal(err)
	}
	err = InNetns(l.Client, func() error {
		ifi, err := net.InterfaceByName(l.ClientIf)
		if err != nil {
			return err
		}
		conn, err := packet.Listen(ifi, packet.Raw, etherTypeARP, nil)
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = conn.WriteTo(frame, &packet.Addr{HardwareAddr: ethernet.Broadcast})
		return err
	})
	if err != nil {
		l.t.Errorf("sending a gratuitous ARP for %s from the client: %v", ip, err)
	}
}
