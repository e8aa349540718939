package layer2

import (
	"context"
	"fmt"
	"math/rand"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"golang.org/x/sys/unix"
)

// link is a speaker and a client namespace joined by a veth pair, as a
// node and a laptop on one LAN.
type link struct {
	t               *testing.T
	speaker, client string // namespace names
	speakerIf       string
	speakerMAC      string
}

func newLink(t *testing.T) *link {
	t.Helper()
	if testing.Short() {
		t.Skip("needs root to make network namespaces")
	}
	if os.Geteuid() != 0 {
		t.Fatal("this test makes network namespaces and must run as root (CI does)")
	}
	prefix := fmt.Sprintf("l2t%04x", rand.Intn(1<<16))
	l := &link{t: t, speaker: prefix + "-s", client: prefix + "-c", speakerIf: prefix + "s", speakerMAC: "02:00:00:00:00:01"}
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", l.speaker).Run()
		_ = exec.Command("ip", "netns", "del", l.client).Run()
	})
	l.run("ip", "netns", "add", l.speaker)
	l.run("ip", "netns", "add", l.client)
	l.run("ip", "link", "add", l.speakerIf, "netns", l.speaker, "address", l.speakerMAC, "type", "veth",
		"peer", "name", prefix+"c", "netns", l.client, "address", "02:00:00:00:00:64")
	for _, c := range [][]string{
		{l.speaker, "ip", "addr", "add", "198.51.100.1/24", "dev", l.speakerIf},
		{l.speaker, "ip", "addr", "add", "2001:db8:100::1/64", "dev", l.speakerIf, "nodad"},
		{l.speaker, "ip", "link", "set", l.speakerIf, "up"},
		{l.client, "ip", "addr", "add", "198.51.100.100/24", "dev", prefix + "c"},
		{l.client, "ip", "addr", "add", "2001:db8:100::100/64", "dev", prefix + "c", "nodad"},
		{l.client, "ip", "link", "set", prefix + "c", "up"},
		// The client re-checks a stale entry after 1 s instead of 5 s.
		{l.client, "sysctl", "-qw", "net.ipv6.neigh." + prefix + "c.delay_first_probe_time=1"},
		{l.client, "sysctl", "-qw", "net.ipv4.neigh." + prefix + "c.delay_first_probe_time=1"},
	} {
		l.run(append([]string{"ip", "netns", "exec"}, c...)...)
	}
	// The kernel's IPv6 link-local address appears a moment after up.
	time.Sleep(100 * time.Millisecond)
	return l
}

func (l *link) run(args ...string) string {
	l.t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// startResponder opens a responder inside the speaker namespace.
func (l *link) startResponder(ctx context.Context) *Responder {
	l.t.Helper()
	var r *Responder
	err := inNetns(l.speaker, func() error {
		ifi, err := net.InterfaceByName(l.speakerIf)
		if err != nil {
			return err
		}
		r, err = NewResponder(ifi, testr.New(l.t))
		return err
	})
	if err != nil {
		l.t.Fatal(err)
	}
	go func() { _ = r.Run(ctx) }()
	return r
}

// inNetns runs f on a thread that has entered the named namespace.
// Sockets f opens stay in that namespace.
func inNetns(name string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/var/run/netns/" + name)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("entering %s: %w", name, err)
			return
		}
		err = f()
		// Only a thread back in its own namespace may serve other
		// goroutines; otherwise it ends with this one, still locked.
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// touch makes the client's kernel resolve ip by sending it a datagram.
func (l *link) touch(ip netip.Addr) {
	_ = exec.Command("ip", "netns", "exec", l.client, "bash", "-c", fmt.Sprintf("echo x > /dev/udp/%s/9", ip)).Run()
}

// neighbour returns the client's neighbour entry for ip.
func (l *link) neighbour(ip netip.Addr) string {
	return strings.TrimSpace(l.run("ip", "-n", l.client, "neigh", "show", ip.String()))
}

// waitNeighbour waits until the client's entry for ip satisfies ok.
func (l *link) waitNeighbour(ip netip.Addr, what string, ok func(entry string) bool) {
	l.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		entry := l.neighbour(ip)
		if ok(entry) {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("client's entry for %s: %q, want %s", ip, entry, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestResponderOnALink(t *testing.T) {
	l := newLink(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := l.startResponder(ctx)
	ours := func(entry string) bool { return strings.Contains(entry, "lladdr "+l.speakerMAC) }
	reachableOurs := func(entry string) bool { return ours(entry) && strings.Contains(entry, "REACHABLE") }

	for _, vip := range []netip.Addr{vip4, vip6} {
		t.Run("resolves "+vip.String(), func(t *testing.T) {
			l.t = t
			if err := r.Announce(vip); err != nil {
				t.Fatal(err)
			}
			l.touch(vip)
			l.waitNeighbour(vip, "our MAC", reachableOurs)
		})

		t.Run("gratuitous announcement replaces an old entry "+vip.String(), func(t *testing.T) {
			l.t = t
			r.Withdraw(vip)
			l.run("ip", "-n", l.client, "neigh", "replace", vip.String(), "lladdr", "02:00:00:00:00:99", "nud", "stale", "dev", strings.TrimSuffix(l.speakerIf, "s")+"c")
			if err := r.Announce(vip); err != nil {
				t.Fatal(err)
			}
			l.waitNeighbour(vip, "our MAC after the gratuitous announcement", ours)
		})

		t.Run("answers the client's unicast re-check of a stale entry "+vip.String(), func(t *testing.T) {
			l.t = t
			l.run("ip", "-n", l.client, "neigh", "replace", vip.String(), "lladdr", l.speakerMAC, "nud", "stale", "dev", strings.TrimSuffix(l.speakerIf, "s")+"c")
			// Traffic to a stale entry sends it to DELAY, then PROBE: a
			// unicast solicitation to the address itself, which only a
			// packet socket sees when the address is on no interface.
			l.touch(vip)
			l.waitNeighbour(vip, "REACHABLE again after the unicast probe", reachableOurs)
		})

		t.Run("stops answering when withdrawn "+vip.String(), func(t *testing.T) {
			l.t = t
			r.Withdraw(vip)
			l.run("ip", "-n", l.client, "neigh", "flush", "to", vip.String())
			l.touch(vip)
			time.Sleep(1500 * time.Millisecond)
			if entry := l.neighbour(vip); ours(entry) {
				t.Fatalf("client still resolves %s to us: %q", vip, entry)
			}
		})
	}
	if r.Stats.ARPAnswers.Load() == 0 || r.Stats.NDPAnswers.Load() == 0 || r.Stats.Gratuitous.Load() == 0 {
		t.Errorf("stats did not count: arp %d, ndp %d, gratuitous %d", r.Stats.ARPAnswers.Load(), r.Stats.NDPAnswers.Load(), r.Stats.Gratuitous.Load())
	}
}
