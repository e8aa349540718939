package bfd

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"

	"github.com/barelb/barelb/internal/testenv"
	"github.com/barelb/barelb/internal/testutil"
)

// The lab: two network namespaces joined by a veth pair, "a" (ours) and
// "b" (the peer: FRR's bfdd or another Manager), with documentation
// addresses only.
var (
	addrA4 = netip.MustParseAddr("198.51.100.1")
	addrB4 = netip.MustParseAddr("198.51.100.2")
	addrA6 = netip.MustParseAddr("2001:db8:100::1")
	addrB6 = netip.MustParseAddr("2001:db8:100::2")
	llA    = netip.MustParseAddr("fe80::a")
	llB    = netip.MustParseAddr("fe80::b")
)

// The routed lab (newRoutedLab) puts a router, namespace "r", between a
// and b: b has these addresses, two hops from a.
var (
	farB4 = netip.MustParseAddr("203.0.113.2")
	farB6 = netip.MustParseAddr("2001:db8:200::2")
)

type lab struct {
	t          testing.TB
	nsA, nsB   string
	ifA, ifB   string
	frrDir     string
	bfdd, zebr *exec.Cmd
	// nsR and ifRB are the router and its link to b, in the routed lab.
	nsR, ifRB string
}

// requireRoot skips a test that needs network namespaces when not root
// or with -short.
func requireRoot(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped with -short: makes network namespaces")
	}
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root to create network namespaces (run the tests as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipped: iproute2's ip is not installed")
	}
}

// newLab makes the two namespaces and the veth between them; they are
// removed when the test ends.
func newLab(t testing.TB) *lab {
	t.Helper()
	requireRoot(t)
	prefix := fmt.Sprintf("bfd%05x", rand.IntN(1<<20))
	l := &lab{t: t, nsA: prefix + "-a", nsB: prefix + "-b", ifA: prefix + "a", ifB: prefix + "b"}
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", l.nsA).Run()
		_ = exec.Command("ip", "netns", "del", l.nsB).Run()
	})
	l.run("ip", "netns", "add", l.nsA)
	l.run("ip", "netns", "add", l.nsB)
	l.run("ip", "link", "add", l.ifA, "netns", l.nsA, "type", "veth", "peer", "name", l.ifB, "netns", l.nsB)
	for _, side := range []struct {
		ns, ifName string
		a4, a6, ll netip.Addr
	}{{l.nsA, l.ifA, addrA4, addrA6, llA}, {l.nsB, l.ifB, addrB4, addrB6, llB}} {
		// Addresses survive a link going down, as on a router port.
		l.run("ip", "netns", "exec", side.ns, "sysctl", "-qw", "net.ipv6.conf.all.keep_addr_on_down=1")
		l.run("ip", "-n", side.ns, "addr", "add", side.a4.String()+"/24", "dev", side.ifName)
		l.run("ip", "-n", side.ns, "addr", "add", side.a6.String()+"/64", "dev", side.ifName, "nodad")
		l.run("ip", "-n", side.ns, "addr", "add", side.ll.String()+"/64", "dev", side.ifName, "nodad")
		l.run("ip", "-n", side.ns, "link", "set", "lo", "up")
		l.run("ip", "-n", side.ns, "link", "set", side.ifName, "up")
	}
	return l
}

// newRoutedLab makes namespaces a and b with a router, r, between them:
// a (198.51.100.1, 2001:db8:100::1) – r – b (farB4, farB6), routes both
// ways through r, which forwards. A packet sent with TTL 255 arrives
// with 254. Everything is removed when the test ends.
func newRoutedLab(t testing.TB) *lab {
	t.Helper()
	requireRoot(t)
	prefix := fmt.Sprintf("bfd%05x", rand.IntN(1<<20))
	l := &lab{t: t, nsA: prefix + "-a", nsB: prefix + "-b", nsR: prefix + "-r", ifA: prefix + "a", ifB: prefix + "b", ifRB: prefix + "rb"}
	ifRA := prefix + "ra"
	t.Cleanup(func() {
		for _, ns := range []string{l.nsA, l.nsB, l.nsR} {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	for _, ns := range []string{l.nsA, l.nsB, l.nsR} {
		l.run("ip", "netns", "add", ns)
		l.run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.keep_addr_on_down=1")
		l.run("ip", "-n", ns, "link", "set", "lo", "up")
	}
	l.run("ip", "link", "add", l.ifA, "netns", l.nsA, "type", "veth", "peer", "name", ifRA, "netns", l.nsR)
	l.run("ip", "link", "add", l.ifRB, "netns", l.nsR, "type", "veth", "peer", "name", l.ifB, "netns", l.nsB)
	for _, a := range []struct{ ns, ifName, addr string }{
		{l.nsA, l.ifA, addrA4.String() + "/24"}, {l.nsA, l.ifA, addrA6.String() + "/64"},
		{l.nsR, ifRA, "198.51.100.254/24"}, {l.nsR, ifRA, "2001:db8:100::fe/64"},
		{l.nsR, l.ifRB, "203.0.113.254/24"}, {l.nsR, l.ifRB, "2001:db8:200::fe/64"},
		{l.nsB, l.ifB, farB4.String() + "/24"}, {l.nsB, l.ifB, farB6.String() + "/64"},
	} {
		args := []string{"ip", "-n", a.ns, "addr", "add", a.addr, "dev", a.ifName}
		if strings.Contains(a.addr, ":") {
			args = append(args, "nodad")
		}
		l.run(args...)
	}
	for _, link := range [][2]string{{l.nsA, l.ifA}, {l.nsR, ifRA}, {l.nsR, l.ifRB}, {l.nsB, l.ifB}} {
		l.run("ip", "-n", link[0], "link", "set", link[1], "up")
	}
	l.run("ip", "-n", l.nsA, "route", "add", "203.0.113.0/24", "via", "198.51.100.254")
	l.run("ip", "-n", l.nsA, "route", "add", "2001:db8:200::/64", "via", "2001:db8:100::fe")
	l.run("ip", "-n", l.nsB, "route", "add", "198.51.100.0/24", "via", "203.0.113.254")
	l.run("ip", "-n", l.nsB, "route", "add", "2001:db8:100::/64", "via", "2001:db8:200::fe")
	l.run("ip", "netns", "exec", l.nsR, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	return l
}

func (l *lab) run(args ...string) string {
	l.t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// events collects a Manager's changes.
type events chan Change

// next returns the first change of peer at or after since that ok
// accepts, failing the test after timeout. Other changes are logged and
// skipped: on this shared, loaded machine a settled session with 300 ms
// detection can flap, and such a flap must not be taken for the reaction
// to what the test did.
func (ev events) next(t testing.TB, peer Key, since time.Time, timeout time.Duration, what string, ok func(Change) bool) Change {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case c := <-ev:
			if c.Peer == peer && !c.At.Before(since) && ok(c) {
				return c
			}
			if c.To != StateInit {
				t.Logf("(skipping change %s: %s -> %s, diag %s, remote %s/%s, at %s)",
					c.Peer, c.From, c.To, c.Diag, c.RemoteState, c.RemoteDiag, c.At.Format("15:04:05.000"))
			}
		case <-deadline:
			t.Fatalf("%s: no change to %s within %v", peer, what, timeout)
		}
	}
}

// wait returns the next change of peer into state want.
func (ev events) wait(t testing.TB, peer Key, want State, timeout time.Duration) Change {
	t.Helper()
	return ev.next(t, peer, time.Time{}, timeout, want.String(), func(c Change) bool { return c.To == want })
}

// waitAfter returns the next change of peer into state want at or after
// since.
func (ev events) waitAfter(t testing.TB, peer Key, want State, since time.Time, timeout time.Duration) Change {
	t.Helper()
	return ev.next(t, peer, since, timeout, want.String(), func(c Change) bool { return c.To == want })
}

// settle waits until the session is Up with the given timers and has
// stayed so for a second, retrying after flaps (logged).
func settle(t testing.TB, m *Manager, ev events, k Key, tx, detect time.Duration) {
	t.Helper()
	for try := 0; ; try++ {
		waitSettled(t, m, k, tx, detect)
		quiet := true
		deadline := time.After(time.Second)
	watch:
		for {
			select {
			case c := <-ev:
				if c.Peer == k {
					t.Logf("FLAP while settling: %s %s -> %s, diag %s, remote %s/%s", c.Peer, c.From, c.To, c.Diag, c.RemoteState, c.RemoteDiag)
					quiet = false
				}
			case <-deadline:
				break watch
			}
		}
		if quiet {
			return
		}
		if try == 5 {
			t.Fatalf("%s does not stay Up", k)
		}
	}
}

// noAdminDown fails if, within d, one of peers goes down because its
// peer said AdminDown; other changes (flaps on a loaded machine) are
// logged.
func (ev events) noAdminDown(t testing.TB, d time.Duration, peers ...Key) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case c := <-ev:
			if !slices.Contains(peers, c.Peer) {
				continue
			}
			if c.RemoteState == StateAdminDown {
				t.Fatalf("%s went %s on an AdminDown from its peer", c.Peer, c.To)
			}
			t.Logf("FLAP: %s %s -> %s, diag %s", c.Peer, c.From, c.To, c.Diag)
		case <-deadline:
			return
		}
	}
}

// none fails if peer changes state within d.
func (ev events) none(t testing.TB, peer Key, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case c := <-ev:
			if c.Peer == peer {
				t.Fatalf("unexpected change of %s: %s -> %s, diag %s", c.Peer, c.From, c.To, c.Diag)
			}
		case <-deadline:
			return
		}
	}
}

// startManager starts a Manager whose sockets live in namespace ns.
func startManager(t testing.TB, ns string, log logr.Logger) (*Manager, events) {
	t.Helper()
	ev := make(events, 256)
	m, err := Start(context.Background(), Options{
		Log:        log,
		OnChange:   func(c Change) { ev <- c },
		OpenSocket: func(open func() error) error { return testenv.InNetns(ns, open) },
	})
	if err != nil {
		t.Fatalf("starting the manager in %s: %v", ns, err)
	}
	t.Cleanup(m.Close)
	return m, ev
}

func testLog(t testing.TB) logr.Logger {
	if tt, ok := t.(*testing.T); ok && testing.Verbose() {
		return testr.NewWithOptions(tt, testr.Options{Verbosity: 0})
	}
	return logr.Discard()
}

// info returns the snapshot of one session.
func info(t testing.TB, m *Manager, k Key) SessionInfo {
	t.Helper()
	for _, s := range m.Sessions() {
		if s.Peer == k {
			return s
		}
	}
	t.Fatalf("no session %s", k)
	return SessionInfo{}
}

// ---- FRR ----

const frrDir = "/usr/lib/frr"

// startFRR runs zebra and bfdd by hand in namespace b, state in a temporary
// folder owned by frr:frr. The test is skipped when FRR is not installed.
func (l *lab) startFRR() {
	l.t.Helper()
	for _, bin := range []string{"zebra", "bfdd"} {
		if _, err := os.Stat(filepath.Join(frrDir, bin)); err != nil {
			l.t.Skipf("skipped: FRR's %s is not installed (apt-get install frr): %v", bin, err)
		}
	}
	if _, err := exec.LookPath("vtysh"); err != nil {
		l.t.Skip("skipped: vtysh is not installed (apt-get install frr)")
	}
	dir, err := os.MkdirTemp("", "barelb-bfd-frr-")
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { _ = os.RemoveAll(dir) })
	l.frrDir = dir
	l.run("chown", "frr:frr", dir)
	l.run("install", "-o", "frr", "-g", "frr", "-m", "0640", "/dev/null", filepath.Join(dir, "frr.conf"))
	l.zebr = l.daemon("zebra")
	l.t.Cleanup(func() { stopDaemon(l.zebr) })
	testutil.Eventually(l.t, 10*time.Second, "zebra's socket", func() (bool, string) {
		_, err := os.Stat(filepath.Join(dir, "zserv.api"))
		return err == nil, fmt.Sprint(err)
	})
	l.startBFDD()
	l.t.Cleanup(func() { stopDaemon(l.bfdd) })
}

// startBFDD (re)starts bfdd and waits for its vty.
func (l *lab) startBFDD() {
	l.t.Helper()
	_ = os.Remove(filepath.Join(l.frrDir, "bfdd.vty"))
	l.bfdd = l.daemon("bfdd", "--bfdctl", filepath.Join(l.frrDir, "bfdd.sock"))
	testutil.Eventually(l.t, 10*time.Second, "bfdd's vty", func() (bool, string) {
		err := exec.Command("vtysh", "--vty_socket", l.frrDir, "-d", "bfdd", "-c", "show bfd peers").Run()
		return err == nil, fmt.Sprint(err)
	})
}

func (l *lab) daemon(name string, extra ...string) *exec.Cmd {
	l.t.Helper()
	d := l.frrDir
	args := append([]string{"netns", "exec", l.nsB, filepath.Join(frrDir, name),
		"-f", filepath.Join(d, "frr.conf"), "-i", filepath.Join(d, name+".pid"), "-z", filepath.Join(d, "zserv.api"),
		"--vty_socket", d, "-A", "127.0.0.1", "-P", "0", "--log", "file:" + filepath.Join(d, name+".log")}, extra...)
	cmd := exec.Command("ip", args...)
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("starting %s: %v", name, err)
	}
	return cmd
}

// stopDaemon kills a daemon this test started, by its process.
func stopDaemon(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil || cmd.ProcessState != nil {
		return
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

// killBFDD sends SIGKILL to bfdd and reaps it.
func (l *lab) killBFDD() {
	stopDaemon(l.bfdd)
}

func (l *lab) vtysh(cmds ...string) string {
	l.t.Helper()
	args := []string{"--vty_socket", l.frrDir, "-d", "bfdd"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out, err := exec.Command("vtysh", args...).CombinedOutput()
	if err != nil || strings.Contains(string(out), "% ") {
		l.t.Fatalf("vtysh %q: %v\n%s", cmds, err, out)
	}
	return string(out)
}

// frrPeer configures a bfdd peer towards our address, in the peer node.
func (l *lab) frrPeer(ours, theirs netip.Addr, lines ...string) {
	l.t.Helper()
	l.vtysh(append([]string{"configure terminal", "bfd",
		fmt.Sprintf("peer %s local-address %s interface %s", ours, theirs, l.ifB)}, lines...)...)
}

// frrMultihopPeer configures a multihop bfdd peer towards our address.
func (l *lab) frrMultihopPeer(ours, theirs netip.Addr, lines ...string) {
	l.t.Helper()
	l.vtysh(append([]string{"configure terminal", "bfd",
		fmt.Sprintf("peer %s multihop local-address %s", ours, theirs)}, lines...)...)
}

// frrPeerState is one entry of `show bfd peers json`.
type frrPeerState struct {
	Peer                 string `json:"peer"`
	ID                   uint32 `json:"id"`
	RemoteID             uint32 `json:"remote-id"`
	Status               string `json:"status"`
	Diagnostic           string `json:"diagnostic"`
	RemoteDiagnostic     string `json:"remote-diagnostic"`
	ReceiveInterval      int    `json:"receive-interval"`
	TransmitInterval     int    `json:"transmit-interval"`
	RemoteReceive        int    `json:"remote-receive-interval"`
	RemoteTransmit       int    `json:"remote-transmit-interval"`
	RemoteDetectMult     int    `json:"remote-detect-multiplier"`
	DetectMultiplier     int    `json:"detect-multiplier"`
	RemoteEchoReceiveInt int    `json:"remote-echo-receive-interval"`
	Multihop             bool   `json:"multihop"`
}

func (l *lab) frrState(peer netip.Addr) frrPeerState {
	l.t.Helper()
	out := l.vtysh("show bfd peers json")
	var peers []frrPeerState
	if err := json.Unmarshal([]byte(out), &peers); err != nil {
		l.t.Fatalf("parsing show bfd peers json: %v\n%s", err, out)
	}
	for _, p := range peers {
		if p.Peer == peer.String() {
			return p
		}
	}
	l.t.Fatalf("bfdd has no peer %s:\n%s", peer, out)
	return frrPeerState{}
}
