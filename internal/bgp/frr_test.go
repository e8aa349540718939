package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	apipb "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	bgppkt "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/barelb/barelb/internal/testenv"
)

// The lab: testenv.NewLink joins a speaker namespace (198.51.100.1,
// 2001:db8:100::1, plus .2 and .3 added here) and a router namespace
// (198.51.100.100, 2001:db8:100::100, plus .101 and .102 added here) where
// FRR's zebra and bgpd run by hand. Each session goes to its own router
// address, as sessions to distinct routers would: they all run on one
// GoBGP server. GoBGP dials from its own goroutines, which may run on any thread,
// so the Speaker cannot live in a namespace entered by one thread: the
// test runs itself again, whole, inside the speaker namespace.
const (
	labEnv     = "BARELB_BGP_LAB"
	routerASN  = 64501
	speakerASN = 64500
	routerV4   = "198.51.100.100"
	routerV6   = "2001:db8:100::100"
	// The router's addresses for the iBGP and the MD5 sessions.
	routerV4iBGP = "198.51.100.101"
	routerV4MD5  = "198.51.100.102"
	md5Password  = "s3cret"
)

// labSpec is handed to the test run inside the speaker namespace.
type labSpec struct {
	Router string // router namespace
}

func TestFRR(t *testing.T) {
	if os.Getenv(labEnv) != "" {
		t.Skip("the outer half of the lab test")
	}
	link := testenv.NewLink(t)
	for _, a := range []string{"198.51.100.2/24", "198.51.100.3/24"} {
		link.Run("ip", "-n", link.Speaker, "addr", "add", a, "dev", link.SpeakerIf)
	}
	for _, a := range []string{routerV4iBGP + "/24", routerV4MD5 + "/24"} {
		link.Run("ip", "-n", link.Client, "addr", "add", a, "dev", link.ClientIf)
	}
	testenv.RerunInNetns(t, link.Speaker, "TestFRRLab", labEnv, labSpec{Router: link.Client})
}

// TestFRRLab runs inside the speaker namespace, started by TestFRR.
func TestFRRLab(t *testing.T) {
	var spec labSpec
	if !testenv.ReadRerunSpec(t, labEnv, &spec) {
		t.Skip("run by TestFRR inside the speaker namespace")
	}
	ctx := context.Background()
	router := startFRR(t, spec.Router)

	events := &eventLog{}
	sp := New(Options{RouterID: netip.MustParseAddr("198.51.100.1"), ASN: speakerASN, Logger: testr.NewWithOptions(t, testr.Options{Verbosity: 0}), OnEvent: events.add})
	if err := sp.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sp.Stop(context.Background()) })

	ebgp := Peer{Name: "ebgp", Address: netip.MustParseAddr(routerV4), ASN: routerASN, SourceAddress: netip.MustParseAddr("198.51.100.1"),
		HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second, ConnectRetry: 2 * time.Second,
		NextHopV6: netip.MustParseAddr("2001:db8:100::1")}
	ibgp := Peer{Name: "ibgp", Address: netip.MustParseAddr(routerV4iBGP), ASN: routerASN, LocalASN: routerASN, SourceAddress: netip.MustParseAddr("198.51.100.2"),
		ConnectRetry: 2 * time.Second, GracefulRestart: true}
	v6 := Peer{Name: "v6", Address: netip.MustParseAddr(routerV6), ASN: routerASN, SourceAddress: netip.MustParseAddr("2001:db8:100::1"),
		ConnectRetry: 2 * time.Second, DisableMP: true}

	start := time.Now()
	if err := sp.SetPeers(ctx, []Peer{ebgp, ibgp, v6}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ebgp", "ibgp", "v6"} {
		waitUp(t, sp, name, 15*time.Second)
		t.Logf("MEASURED session %s established %v after SetPeers", name, time.Since(start).Round(time.Millisecond))
	}
	for _, n := range []string{"198.51.100.1", "198.51.100.2", "2001:db8:100::1"} {
		if st := router.NeighborState(t, n); st != "Established" {
			t.Errorf("FRR's neighbour %s is %q", n, st)
		}
	}
	// Graceful restart only where asked.
	for n, want := range map[string]bool{"198.51.100.1": false, "198.51.100.2": true} {
		if got := strings.Contains(router.Capability(t, n, "gracefulRestart"), "eceived"); got != want {
			t.Errorf("FRR's neighbour %s: graceful restart received %v, want %v", n, got, want)
		}
	}

	t.Run("routes with attributes", func(t *testing.T) {
		start := time.Now()
		err := sp.SetRoutes(ctx, map[string][]Route{
			"ebgp": {
				{Prefix: netip.MustParsePrefix("203.0.113.7/32"), LocalPref: 300, // not sent: eBGP
					Communities: []Community{Community{Global: 64500, Local1: 1}, Community{Large: true, Global: 64500, Local1: 7, Local2: 7}}},
				{Prefix: netip.MustParsePrefix("2001:db8:5::7/128"), Communities: []Community{Community{Global: 64500, Local1: 6}}},
			},
			"ibgp": {{Prefix: netip.MustParsePrefix("203.0.113.8/32"), LocalPref: 250}},
			"v6":   {{Prefix: netip.MustParsePrefix("2001:db8:5::8/128")}},
		})
		if err != nil {
			t.Fatal(err)
		}
		r := router.WaitRoute(t, "ipv4", "203.0.113.7/32", 10*time.Second)
		t.Logf("MEASURED 203.0.113.7/32 visible in FRR %v after SetRoutes", time.Since(start).Round(time.Millisecond))
		expectPath(t, r, "198.51.100.1", "64500", []string{"64500:1"}, []string{"64500:7:7"}, 0)
		r = router.WaitRoute(t, "ipv4", "203.0.113.8/32", 10*time.Second)
		expectPath(t, r, "198.51.100.2", "Local", nil, nil, 250) // iBGP: empty AS path
		r = router.WaitRoute(t, "ipv6", "2001:db8:5::7/128", 10*time.Second)
		t.Logf("MEASURED 2001:db8:5::7/128 (IPv6 over the IPv4 session) visible %v after SetRoutes", time.Since(start).Round(time.Millisecond))
		expectPath(t, r, "2001:db8:100::1", "64500", []string{"64500:6"}, nil, 0)
		if r.Peer != "198.51.100.1" {
			t.Errorf("2001:db8:5::7/128 learnt from %q, want the IPv4 session 198.51.100.1", r.Peer)
		}
		r = router.WaitRoute(t, "ipv6", "2001:db8:5::8/128", 10*time.Second)
		expectPath(t, r, "2001:db8:100::1", "64500", nil, nil, 0)
		if r.Peer != "2001:db8:100::1" {
			t.Errorf("2001:db8:5::8/128 learnt from %q, want the IPv6 session", r.Peer)
		}
		// What FRR sends back (it passes each session's routes on to the
		// others) stays out of the speaker's RIB: one GoBGP server for
		// the three sessions, one path per prefix.
		time.Sleep(500 * time.Millisecond)
		if n, got := servers(sp), ribSize(t, sp); n != 1 || got != 4 {
			t.Errorf("%d GoBGP servers holding %d paths, want 1 server with 4 (one per prefix)", n, got)
		}
		// Per-peer routes: 203.0.113.8 went to ibgp only.
		if paths := router.Routes(t, "ipv4", "203.0.113.8/32"); len(paths) != 1 {
			t.Errorf("203.0.113.8/32 has %d paths, want 1 (ibgp only): %+v", len(paths), paths)
		}
	})

	t.Run("attributes change and withdraw", func(t *testing.T) {
		start := time.Now()
		if err := sp.SetRoutes(ctx, map[string][]Route{
			"ebgp": {{Prefix: netip.MustParsePrefix("203.0.113.7/32"), Communities: []Community{Community{Global: 64500, Local1: 2}}}},
		}); err != nil {
			t.Fatal(err)
		}
		for _, gone := range []struct{ afi, prefix string }{{"ipv4", "203.0.113.8/32"}, {"ipv6", "2001:db8:5::7/128"}, {"ipv6", "2001:db8:5::8/128"}} {
			router.WaitGone(t, gone.afi, gone.prefix, 10*time.Second)
		}
		t.Logf("MEASURED withdrawals gone from FRR %v after SetRoutes", time.Since(start).Round(time.Millisecond))
		deadline := time.Now().Add(10 * time.Second)
		for {
			r := router.WaitRoute(t, "ipv4", "203.0.113.7/32", time.Second)
			if len(r.Communities) == 1 && r.Communities[0] == "64500:2" && len(r.Large) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("203.0.113.7/32 still carries %v %v", r.Communities, r.Large)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := sp.SetRoutes(ctx, nil); err != nil {
			t.Fatal(err)
		}
		router.WaitGone(t, "ipv4", "203.0.113.7/32", 10*time.Second)
	})

	t.Run("graceful shutdown (RFC 8326): GRACEFUL_SHUTDOWN and LOCAL_PREF 0, then back", func(t *testing.T) {
		routes := map[string][]Route{
			"ebgp": {{Prefix: netip.MustParsePrefix("203.0.113.7/32"), Communities: []Community{{Global: 64500, Local1: 2}}}},
			"ibgp": {{Prefix: netip.MustParsePrefix("203.0.113.8/32"), LocalPref: 250}},
		}
		if err := sp.SetRoutes(ctx, routes); err != nil {
			t.Fatal(err)
		}
		expectPath(t, router.WaitRoute(t, "ipv4", "203.0.113.8/32", 10*time.Second), "198.51.100.2", "Local", nil, nil, 250)
		start := time.Now()
		n, err := sp.SetGracefulShutdown(ctx, true)
		if err != nil {
			t.Fatal(err)
		}
		if n != 2 {
			t.Errorf("SetGracefulShutdown: %d established sessions with routes, want 2 (ebgp, ibgp)", n)
		}
		// FRR names 65535:0 "graceful-shutdown".
		gshut := []string{"graceful-shutdown"}
		waitPath(t, router, "203.0.113.7/32", 10*time.Second, func(r testenv.FRRPath) bool {
			return strings.Join(r.Communities, " ") == "64500:2 graceful-shutdown"
		})
		waitPath(t, router, "203.0.113.8/32", 10*time.Second, func(r testenv.FRRPath) bool {
			return strings.Join(r.Communities, " ") == gshut[0] && r.LocalPref == 0
		})
		t.Logf("MEASURED graceful shutdown: both paths re-advertised %v after SetGracefulShutdown", time.Since(start).Round(time.Millisecond))
		// Routes set meanwhile go out the same way.
		routes["ebgp"] = append(routes["ebgp"], Route{Prefix: netip.MustParsePrefix("203.0.113.9/32")})
		if err := sp.SetRoutes(ctx, routes); err != nil {
			t.Fatal(err)
		}
		expectPath(t, router.WaitRoute(t, "ipv4", "203.0.113.9/32", 10*time.Second), "198.51.100.1", "64500", gshut, nil, 0)
		if _, err := sp.SetGracefulShutdown(ctx, false); err != nil {
			t.Fatal(err)
		}
		waitPath(t, router, "203.0.113.8/32", 10*time.Second, func(r testenv.FRRPath) bool { return len(r.Communities) == 0 && r.LocalPref == 250 })
		waitPath(t, router, "203.0.113.9/32", 10*time.Second, func(r testenv.FRRPath) bool { return len(r.Communities) == 0 })
		if err := sp.SetRoutes(ctx, nil); err != nil {
			t.Fatal(err)
		}
		router.WaitGone(t, "ipv4", "203.0.113.7/32", 10*time.Second)
	})

	t.Run("wrong MD5 password, then the right one", func(t *testing.T) {
		md5 := Peer{Name: "md5", Address: netip.MustParseAddr(routerV4MD5), ASN: routerASN, SourceAddress: netip.MustParseAddr("198.51.100.3"),
			ConnectRetry: 2 * time.Second, Password: "wrong"}
		if err := sp.SetPeers(ctx, []Peer{ebgp, ibgp, v6, md5}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(6 * time.Second)
		st := status(sp, "md5")
		if st.Up {
			t.Fatal("a session with the wrong MD5 password came up")
		}
		if st.Reason == "" {
			t.Error("no reason reported for the session that does not come up")
		}
		t.Logf("MEASURED wrong password after 6 s: state %s, reason %q", st.State, st.Reason)
		if s := router.NeighborState(t, "198.51.100.3"); s == "Established" {
			t.Fatalf("FRR's neighbour with a password is %s", s)
		}
		md5.Password = md5Password
		start := time.Now()
		if err := sp.SetPeers(ctx, []Peer{ebgp, ibgp, v6, md5}); err != nil {
			t.Fatal(err)
		}
		waitUp(t, sp, "md5", 15*time.Second)
		t.Logf("MEASURED right password: established %v after SetPeers", time.Since(start).Round(time.Millisecond))
		if sp.Peers()[0].Peer != "ebgp" || !status(sp, "ebgp").Up {
			t.Error("changing one peer disturbed another")
		}
	})

	t.Run("peer removed: session closed, reason reported", func(t *testing.T) {
		if err := sp.SetPeers(ctx, []Peer{ebgp, ibgp, v6}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for router.NeighborState(t, "198.51.100.3") == "Established" {
			if time.Now().After(deadline) {
				t.Fatal("FRR still has the removed session")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("peer reset (BFD down): routes gone at once, back by themselves", func(t *testing.T) {
		if err := sp.SetRoutes(ctx, map[string][]Route{"ebgp": {{Prefix: netip.MustParsePrefix("203.0.113.9/32")}}}); err != nil {
			t.Fatal(err)
		}
		router.WaitRoute(t, "ipv4", "203.0.113.9/32", 10*time.Second)
		start := time.Now()
		if err := sp.ResetPeer(ctx, "ebgp", "BFD declared the peer down"); err != nil {
			t.Fatal(err)
		}
		router.WaitGone(t, "ipv4", "203.0.113.9/32", 5*time.Second)
		t.Logf("MEASURED reset: route gone from FRR %v after ResetPeer", time.Since(start).Round(time.Millisecond))
		if ev := events.last("ebgp"); ev.Up || !ev.WasUp {
			t.Errorf("last event of ebgp %+v: want the session's down", ev)
		}
		router.WaitRoute(t, "ipv4", "203.0.113.9/32", 20*time.Second)
		t.Logf("MEASURED reset: route back in FRR %v after ResetPeer (connect retry 2 s)", time.Since(start).Round(time.Millisecond))
		if err := sp.ResetPeer(ctx, "no-such-peer", "x"); err != nil {
			t.Errorf("resetting an unknown peer: %v", err)
		}
		if err := sp.SetRoutes(ctx, nil); err != nil {
			t.Fatal(err)
		}
		waitUp(t, sp, "ebgp", 15*time.Second)
	})

	t.Run("router crashes, then a session set up before the router starts", func(t *testing.T) {
		if !router.Kill("bgpd") {
			t.Fatal("bgpd was not running")
		}
		deadline := time.Now().Add(15 * time.Second)
		for status(sp, "ebgp").Up {
			if time.Now().After(deadline) {
				t.Fatal("the session stayed up with bgpd gone")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if ev := events.last("ebgp"); ev.Up || ev.Reason == "" {
			t.Errorf("last event of ebgp %+v: want down with a reason", ev)
		} else {
			t.Logf("MEASURED down event: state %s reason %q", ev.State, ev.Reason)
		}
		// A fresh session (no leftover idle hold), configured while no
		// bgpd runs: its attempts are refused until bgpd starts.
		if err := sp.SetPeers(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if err := sp.SetPeers(ctx, []Peer{ebgp}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(4 * time.Second)
		st := status(sp, "ebgp")
		if st.Up || st.Reason == "" {
			t.Errorf("with no bgpd: %+v, want down with a reason", st)
		}
		t.Logf("MEASURED no bgpd yet: state %s, reason %q", st.State, st.Reason)
		start := time.Now()
		router.Start(t, "bgpd")
		waitUp(t, sp, "ebgp", 15*time.Second)
		t.Logf("MEASURED bgpd started after the session was set: established %v after bgpd's start (connect retry 2 s: GoBGP waits 2-4 s between attempts)", time.Since(start).Round(time.Millisecond))
	})
	if log, err := os.ReadFile(filepath.Join(router.Dir, "bgpd.log")); err == nil {
		for _, line := range strings.Split(string(log), "\n") {
			if strings.Contains(line, "2001:db8:100::1") && !strings.Contains(line, "connect") {
				t.Logf("FRR: %s", line)
			}
		}
	}
	events.mu.Lock()
	for _, e := range events.events {
		t.Logf("event %s %s %s up=%v wasUp=%v reason=%q", e.Time.Format("15:04:05.000"), e.Peer, e.State, e.Up, e.WasUp, e.Reason)
	}
	events.mu.Unlock()
}

// ribSize counts the paths in the RIBs of the speaker's GoBGP servers.
func ribSize(t *testing.T, sp *Speaker) int {
	t.Helper()
	sp.mu.Lock()
	defer sp.mu.Unlock()
	n := 0
	for _, inst := range sp.instances {
		for _, f := range []bgppkt.Family{bgppkt.RF_IPv4_UC, bgppkt.RF_IPv6_UC} {
			err := inst.srv.ListPath(apiutil.ListPathRequest{TableType: apipb.TableType_TABLE_TYPE_GLOBAL, Family: f},
				func(_ bgppkt.NLRI, paths []*apiutil.Path) { n += len(paths) })
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return n
}

func servers(sp *Speaker) int {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return len(sp.instances)
}

type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *eventLog) last(peer string) Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.events) - 1; i >= 0; i-- {
		if l.events[i].Peer == peer {
			return l.events[i]
		}
	}
	return Event{}
}

func status(sp *Speaker, name string) PeerStatus {
	for _, st := range sp.Peers() {
		if st.Peer == name {
			return st
		}
	}
	return PeerStatus{}
}

func waitUp(t *testing.T, sp *Speaker, name string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !status(sp, name).Up {
		if time.Now().After(deadline) {
			t.Fatalf("session %s not established after %v: %+v", name, timeout, status(sp, name))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startFRR runs zebra and bgpd in the router namespace.
func startFRR(t *testing.T, netns string) *testenv.FRR {
	t.Helper()
	conf := fmt.Sprintf(`frr defaults traditional
hostname router
!
router bgp %d
 bgp router-id %s
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 198.51.100.1 remote-as %d
 neighbor 198.51.100.2 remote-as %d
 neighbor 198.51.100.3 remote-as %d
 neighbor 198.51.100.3 password %s
 neighbor %s remote-as %d
 address-family ipv6 unicast
  neighbor 198.51.100.1 activate
  neighbor %s activate
 exit-address-family
!
`, routerASN, routerV4, speakerASN, routerASN, speakerASN, md5Password, "2001:db8:100::1", speakerASN, "2001:db8:100::1")
	return testenv.StartFRR(t, netns, conf, "zebra", "bgpd")
}

// expectPath checks a path's attributes, and that FRR holds it valid.
func expectPath(t *testing.T, r testenv.FRRPath, nexthop, asPath string, communities, large []string, localPref uint32) {
	t.Helper()
	if r.NextHop != nexthop || r.ASPath != asPath || strings.Join(r.Communities, " ") != strings.Join(communities, " ") ||
		strings.Join(r.Large, " ") != strings.Join(large, " ") || r.LocalPref != localPref || !r.Valid {
		t.Errorf("route %+v, want next hop %s, AS path %q, communities %v, large %v, local-pref %d, valid", r, nexthop, asPath, communities, large, localPref)
	}
}

// waitPath waits until FRR's path to prefix (IPv4) satisfies ok.
func waitPath(t *testing.T, router *testenv.FRR, prefix string, timeout time.Duration, ok func(testenv.FRRPath) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := router.WaitRoute(t, "ipv4", prefix, timeout)
		if ok(r) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: FRR still has %+v", prefix, r)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
