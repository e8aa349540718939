package lab

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const frrDir = "/usr/lib/frr"

// routerConfig is bgpd's configuration: AS 64500 accepting sessions from
// any address of the router segment. It honours the GRACEFUL_SHUTDOWN
// community as RFC 8326 §4.2 asks of a receiving router: an import policy
// on the eBGP sessions setting LOCAL_PREF 0 on paths that carry 65535:0
// (route-map GSHUT, the others pass unchanged).
func routerConfig() string {
	return fmt.Sprintf(`hostname router
log stdout
bgp community-list standard GSHUT seq 5 permit 65535:0
route-map GSHUT permit 10
 match community GSHUT
 set local-preference 0
exit
route-map GSHUT permit 20
exit
router bgp %d
 bgp router-id 203.0.113.1
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor NODES peer-group
 neighbor NODES remote-as %d
 bgp listen range %s peer-group NODES
 bgp listen range %s peer-group NODES
 address-family ipv4 unicast
  neighbor NODES activate
  neighbor NODES route-map GSHUT in
 exit-address-family
 address-family ipv6 unicast
  neighbor NODES activate
  neighbor NODES route-map GSHUT in
 exit-address-family
!
`, RouterASN, NodeASN, RouterSegv4, RouterSegv6)
}

// FRRDir is the folder of the router's FRR state: configuration files and
// the vty sockets (vtysh --vty_socket FRRDir).
func (l *Lab) FRRDir() string { return filepath.Join(l.state.StateDir, "frr") }

// startRouter runs zebra, bgpd and bfdd in the router namespace, with their
// state in STATE_DIR/frr owned by frr:frr.
func (l *Lab) startRouter() error {
	return l.startFRR(l.FRRDir(), "router", l.state.Router.Netns, map[string]string{
		"zebra.conf": "hostname router\nlog stdout\n",
		"bgpd.conf":  routerConfig(),
		"bfdd.conf":  "hostname router\nlog stdout\nbfd\n!\n",
		"vtysh.conf": "",
	})
}

// bgpdArgs are bgpd's flags (see startRouter).
func (l *Lab) bgpdArgs() []string {
	dir := l.FRRDir()
	return []string{"-f", filepath.Join(dir, "bgpd.conf"), "-i", filepath.Join(dir, "bgpd.pid"),
		"-z", filepath.Join(dir, "zserv.api"), "--vty_socket", dir, "-A", "127.0.0.1", "-P", "0", "-u", "frr", "-g", "frr"}
}

func (l *Lab) startBgpd() error {
	_, err := l.startProc("router/bgpd", l.state.Router.Netns, filepath.Join(frrDir, "bgpd"), l.bgpdArgs()...)
	return err
}

// RestartRouter restarts the router's bgpd (SIGTERM, as a router reboot
// or an operator's restart does) with the configuration Up gave it, which
// undoes every ConfigureRouter of its BGP part, and waits until it accepts
// connections again. Besides testing recovery, it is the only sure way to
// take a TCP MD5 password off the router's listen ranges: FRR 8.4 keeps
// the key on its listening socket after `no neighbor GROUP password`.
func (l *Lab) RestartRouter(ctx context.Context) error {
	l.mu.Lock()
	p := l.procs["router/bgpd"]
	l.mu.Unlock()
	if p != nil {
		p.stop(stopGrace)
	}
	if err := l.startBgpd(); err != nil {
		return fmt.Errorf("restarting bgpd: %w", err)
	}
	return l.waitRouter(ctx)
}

// waitRouter waits until bgpd accepts connections on port 179.
func (l *Lab) waitRouter(ctx context.Context) error {
	addr := l.state.Router.Addr(SegmentRouter, 4).String() + ":179"
	return waitFor(ctx, 20*time.Second, "bgpd on "+addr, func() (bool, error) {
		l.mu.Lock()
		p := l.procs["router/bgpd"]
		l.mu.Unlock()
		if err := p.errExited(); err != nil {
			return false, fmt.Errorf("%w (see %s)", err, l.logPath("router_bgpd"))
		}
		c, err := dialIn(ctx, l.state.Router.Netns, "tcp", addr)
		if err != nil {
			return false, err
		}
		c.Close()
		return true, nil
	})
}

// Vtysh runs vtysh commands against the router's FRR.
func (l *Lab) Vtysh(ctx context.Context, commands ...string) ([]byte, error) {
	args := []string{"vtysh", "--vty_socket", l.FRRDir()}
	for _, c := range commands {
		args = append(args, "-c", c)
	}
	return l.Exec(ctx, "router", args...)
}

// RouterPeerGroup is the peer group of bgpd that accepts the nodes'
// sessions (listen ranges of the router segment, remote AS NodeASN).
const RouterPeerGroup = "NODES"

// ConfigureRouter changes the router's running FRR configuration: the
// lines are typed into vtysh after `configure terminal`, in order, with the
// context they open (e.g. "router bgp 64500", "neighbor NODES password x",
// "exit"; "bfd", "profile fast", "receive-interval 100"). It fails when
// FRR refuses a line. Use it to give the router what one test needs and to
// take it back afterwards (or RestartRouter, which returns bgpd to the
// configuration Up wrote; the changes are never saved).
func (l *Lab) ConfigureRouter(ctx context.Context, lines ...string) error {
	out, err := l.Vtysh(ctx, append([]string{"configure terminal"}, lines...)...)
	// vtysh reports a refused line on its output ("% Unknown command",
	// "% Invalid …") but not always in its exit status.
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "%") {
			return fmt.Errorf("configuring the router: %s (lines %q)", strings.TrimSpace(line), lines)
		}
	}
	if err != nil {
		return fmt.Errorf("configuring the router: %w: %s", err, out)
	}
	return nil
}

// ExtRouterASN is the AS of the far router StartFarRouter runs on the
// ext host.
const ExtRouterASN = 64501

// farRouterConfig is the far router's bgpd configuration: AS ExtRouterASN
// accepting eBGP multihop sessions from any address of the router segment
// (the nodes, two hops away), in peer group NODES.
func farRouterConfig() string {
	return fmt.Sprintf(`hostname ext
log stdout
router bgp %d
 bgp router-id 203.0.113.66
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor NODES peer-group
 neighbor NODES remote-as %d
 neighbor NODES ebgp-multihop 255
 bgp listen range %s peer-group NODES
 bgp listen range %s peer-group NODES
 address-family ipv4 unicast
  neighbor NODES activate
 exit-address-family
 address-family ipv6 unicast
  neighbor NODES activate
 exit-address-family
!
`, ExtRouterASN, NodeASN, RouterSegv4, RouterSegv6)
}

// FarRouterDir is the folder of the far router's FRR state (vtysh
// --vty_socket FarRouterDir), once StartFarRouter ran.
func (l *Lab) FarRouterDir() string { return filepath.Join(l.state.StateDir, "frr-ext") }

// StartFarRouter runs a second FRR (zebra, bgpd, bfdd) on the ext host,
// behind the router: two hops from every node, for eBGP multihop and
// multihop BFD. It is AS ExtRouterASN and accepts sessions from the
// router segment's addresses (peer group NODES, remote AS NodeASN,
// ebgp-multihop). Its zebra resolves next hops through the default route
// (the nodes' addresses are reachable only that way). It returns once
// bgpd accepts connections; Down stops it with the rest of the lab.
func (l *Lab) StartFarRouter(ctx context.Context) error {
	files := map[string]string{
		"zebra.conf": "hostname ext\nlog stdout\nip nht resolve-via-default\nipv6 nht resolve-via-default\n",
		"bgpd.conf":  farRouterConfig(),
		"bfdd.conf":  "hostname ext\nlog stdout\nbfd\n!\n",
		"vtysh.conf": "",
	}
	if err := l.startFRR(l.FarRouterDir(), "ext", l.state.Ext.Netns, files); err != nil {
		return err
	}
	addr := l.state.Ext.Addr(SegmentExt, 4).String() + ":179"
	return waitFor(ctx, 20*time.Second, "the far router's bgpd on "+addr, func() (bool, error) {
		c, err := dialIn(ctx, l.state.Ext.Netns, "tcp", addr)
		if err != nil {
			return false, err
		}
		c.Close()
		return true, nil
	})
}

// FarVtysh runs vtysh commands against the far router's FRR.
func (l *Lab) FarVtysh(ctx context.Context, commands ...string) ([]byte, error) {
	args := []string{"vtysh", "--vty_socket", l.FarRouterDir()}
	for _, c := range commands {
		args = append(args, "-c", c)
	}
	return l.Exec(ctx, "ext", args...)
}

// startFRR writes an FRR configuration into dir (owned by frr:frr) and
// runs zebra, bgpd and bfdd with it in namespace ns, as processes
// "NAME/zebra", "NAME/bgpd" and "NAME/bfdd" (bgpd with the flags bgpdArgs
// gives the router's, so that RestartRouter restarts it alike).
func (l *Lab) startFRR(dir, name, ns string, files map[string]string) error {
	u, err := user.Lookup("frr")
	if err != nil {
		return fmt.Errorf("looking up user frr (is FRR installed?): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return fmt.Errorf("giving %s to frr: %w", dir, err)
	}
	for file, content := range files {
		p := filepath.Join(dir, file)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
		if err := os.Chown(p, uid, gid); err != nil {
			return fmt.Errorf("giving %s to frr: %w", p, err)
		}
	}
	zserv := filepath.Join(dir, "zserv.api")
	common := func(daemon string) []string {
		return []string{"-f", filepath.Join(dir, daemon+".conf"), "-i", filepath.Join(dir, daemon+".pid"),
			"-z", zserv, "--vty_socket", dir, "-A", "127.0.0.1", "-P", "0", "-u", "frr", "-g", "frr"}
	}
	if _, err := l.startProc(name+"/zebra", ns, filepath.Join(frrDir, "zebra"), common("zebra")...); err != nil {
		return err
	}
	_ = waitFor(context.Background(), 5*time.Second, "zebra's socket", func() (bool, error) {
		_, err := os.Stat(zserv)
		return err == nil, nil
	})
	if _, err := l.startProc(name+"/bgpd", ns, filepath.Join(frrDir, "bgpd"), common("bgpd")...); err != nil {
		return err
	}
	bfd := append(common("bfdd"), "--bfdctl", filepath.Join(dir, "bfdd.sock"))
	_, err = l.startProc(name+"/bfdd", ns, filepath.Join(frrDir, "bfdd"), bfd...)
	return err
}
