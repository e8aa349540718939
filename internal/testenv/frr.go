package testenv

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FRR is FRR's daemons (zebra, bgpd, bfdd, …) run by hand in a network
// namespace, as the router across a Link, with one integrated frr.conf
// and their state in a temporary folder owned by frr:frr. The daemons run
// in the foreground, so that Kill ends one at once, as a crash. They are
// stopped and the folder removed when the test ends.
type FRR struct {
	Netns string
	Dir   string // frr.conf, logs (NAME.log), vty sockets
	procs map[string]*exec.Cmd
}

// StartFRR writes conf as frr.conf and starts the daemons in this order.
// A machine without FRR skips the test.
func StartFRR(t testing.TB, netns, conf string, daemons ...string) *FRR {
	t.Helper()
	for _, d := range daemons {
		if _, err := os.Stat("/usr/lib/frr/" + d); err != nil {
			t.Skipf("FRR's %s is not installed (apt-get install frr)", d)
		}
	}
	dir, err := os.MkdirTemp("", "barelb-frr-")
	if err != nil {
		t.Fatal(err)
	}
	f := &FRR{Netns: netns, Dir: dir, procs: map[string]*exec.Cmd{}}
	t.Cleanup(func() {
		for i := len(daemons) - 1; i >= 0; i-- {
			f.Kill(daemons[i])
		}
		_ = os.RemoveAll(dir)
	})
	if err := os.WriteFile(filepath.Join(dir, "frr.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chown", "-R", "frr:frr", dir).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
	for _, d := range daemons {
		f.Start(t, d)
	}
	return f
}

// Start runs a daemon (again, after Kill) and waits for its vty socket.
func (f *FRR) Start(t testing.TB, name string) {
	t.Helper()
	_ = os.Remove(filepath.Join(f.Dir, name+".vty"))
	args := []string{"netns", "exec", f.Netns, "/usr/lib/frr/" + name, "-f", filepath.Join(f.Dir, "frr.conf"),
		"-i", filepath.Join(f.Dir, name+".pid"), "-z", filepath.Join(f.Dir, "zserv.api"), "--vty_socket", f.Dir,
		"-A", "127.0.0.1", "-P", "0", "--log", "file:" + filepath.Join(f.Dir, name+".log")}
	if name == "bfdd" {
		args = append(args, "--bfdctl", filepath.Join(f.Dir, "bfdd.sock"))
	}
	cmd := exec.Command("ip", args...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	f.procs[name] = cmd
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(f.Dir, name+".vty")); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not open its vty socket", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill ends a daemon at once (SIGKILL, as a crash: the kernel closes its
// TCP connections). It says whether the daemon was running.
func (f *FRR) Kill(name string) bool {
	cmd := f.procs[name]
	if cmd == nil || cmd.Process == nil {
		return false
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	delete(f.procs, name)
	return true
}

// Vtysh runs one vtysh command against the daemons.
func (f *FRR) Vtysh(t testing.TB, cmd string) []byte {
	t.Helper()
	out, err := exec.Command("vtysh", "--vty_socket", f.Dir, "-c", cmd).CombinedOutput()
	if err != nil {
		t.Fatalf("vtysh -c %q: %v\n%s", cmd, err, out)
	}
	return out
}

// NeighborState is bgpd's state of a neighbour ("Established", "Active", …).
func (f *FRR) NeighborState(t testing.TB, addr string) string {
	t.Helper()
	var n map[string]struct {
		State string `json:"bgpState"`
	}
	out := f.Vtysh(t, "show bgp neighbors "+addr+" json")
	if err := json.Unmarshal(out, &n); err != nil {
		t.Fatalf("neighbour JSON: %v\n%s", err, out)
	}
	return n[addr].State
}

// Capability is how bgpd describes a capability of a neighbour
// ("advertisedAndReceived", "advertised", …).
func (f *FRR) Capability(t testing.TB, addr, name string) string {
	t.Helper()
	var n map[string]struct {
		Capabilities map[string]any `json:"neighborCapabilities"`
	}
	out := f.Vtysh(t, "show bgp neighbors "+addr+" json")
	if err := json.Unmarshal(out, &n); err != nil {
		t.Fatalf("neighbour JSON: %v\n%s", err, out)
	}
	return fmt.Sprint(n[addr].Capabilities[name])
}

// FRRPath is one path of `show bgp AFI unicast PREFIX json`.
type FRRPath struct {
	Peer        string
	NextHop     string
	ASPath      string
	Communities []string
	Large       []string
	LocalPref   uint32
	Valid       bool
}

// Routes are bgpd's paths to a prefix; afi is "ipv4" or "ipv6".
func (f *FRR) Routes(t testing.TB, afi, prefix string) []FRRPath {
	t.Helper()
	var doc struct {
		Paths []struct {
			ASPath struct {
				String string `json:"string"`
			} `json:"aspath"`
			Community *struct {
				String string `json:"string"`
			} `json:"community"`
			Large *struct {
				String string `json:"string"`
			} `json:"largeCommunity"`
			LocalPref  *uint32 `json:"locPrf"`
			LocalPref2 *uint32 `json:"localpref"`
			Valid      bool    `json:"valid"`
			Nexthops   []struct {
				IP string `json:"ip"`
			} `json:"nexthops"`
			Peer struct {
				PeerID string `json:"peerId"`
			} `json:"peer"`
		} `json:"paths"`
	}
	out := f.Vtysh(t, fmt.Sprintf("show bgp %s unicast %s json", afi, prefix))
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("route JSON: %v\n%s", err, out)
	}
	var paths []FRRPath
	for _, p := range doc.Paths {
		fp := FRRPath{Peer: p.Peer.PeerID, ASPath: p.ASPath.String, Valid: p.Valid}
		if len(p.Nexthops) > 0 {
			fp.NextHop = p.Nexthops[0].IP
		}
		if p.Community != nil {
			fp.Communities = strings.Fields(p.Community.String)
		}
		if p.Large != nil {
			fp.Large = strings.Fields(p.Large.String)
		}
		if p.LocalPref != nil {
			fp.LocalPref = *p.LocalPref
		} else if p.LocalPref2 != nil {
			fp.LocalPref = *p.LocalPref2
		}
		paths = append(paths, fp)
	}
	return paths
}

// WaitRoute waits until bgpd has a path to the prefix and returns the first.
func (f *FRR) WaitRoute(t testing.TB, afi, prefix string, timeout time.Duration) FRRPath {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if paths := f.Routes(t, afi, prefix); len(paths) > 0 {
			return paths[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("FRR has no route to %s after %v", prefix, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitGone waits until bgpd has no path to the prefix.
func (f *FRR) WaitGone(t testing.TB, afi, prefix string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for len(f.Routes(t, afi, prefix)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("FRR still has %s after %v", prefix, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
