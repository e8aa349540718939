package bgp

import (
	"context"
	"encoding/json"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/barelb/barelb/internal/testutil"
	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	apipb "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	bgppkt "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// golden compares m, as indented JSON with stable formatting, with
// testdata/NAME.json (testutil.Golden: -update rewrites it).
func golden(t *testing.T, name string, m proto.Message) {
	t.Helper()
	raw, err := protojson.MarshalOptions{Multiline: false}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	got, _ := json.MarshalIndent(v, "", "  ")
	got = append(got, '\n')
	testutil.Golden(t, filepath.Join("testdata", name+".json"), got)
}

// goldenJSON is golden for GoBGP's native types (apiutil.Path and the
// path attributes of pkg/packet/bgp), which marshal to JSON themselves.
func goldenJSON(t *testing.T, name string, v any) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	testutil.Golden(t, filepath.Join("testdata", name+".json"), got)
}

func TestAPIPeer(t *testing.T) {
	tests := []struct {
		name string
		peer Peer
	}{
		{"peer_defaults", Peer{Name: "tor", Address: netip.MustParseAddr("198.51.100.254"), ASN: 64501}},
		{"peer_everything", Peer{Name: "tor", Address: netip.MustParseAddr("198.51.100.254"), Port: 1179, ASN: 64501, LocalASN: 64502,
			SourceAddress: netip.MustParseAddr("198.51.100.1"), HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second,
			ConnectRetry: 2 * time.Second, EBGPMultiHopTTL: 4, Password: "s3cret", GracefulRestart: true}},
		{"peer_v6_single_family", Peer{Name: "v6", Address: netip.MustParseAddr("2001:db8::fe"), ASN: 64501, DisableMP: true}},
		{"peer_unnumbered", Peer{Name: "leaf", Interface: "eth1", Address: netip.MustParseAddr("fe80::1"), ASN: 64501}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { golden(t, tc.name, apiPeer(tc.peer)) })
	}
}

func TestExportPolicy(t *testing.T) {
	v4 := Peer{Address: netip.MustParseAddr("198.51.100.254"), NextHopV6: netip.MustParseAddr("2001:db8:100::1")}
	unnumbered := Peer{Interface: "eth1", Address: netip.MustParseAddr("fe80::1"), NextHopV6: netip.MustParseAddr("fe80::2%eth1")}
	tests := []struct {
		name    string
		peer    Peer
		route   Route
		gshut   bool
		wantErr string
	}{
		{name: "export_v4_attributes", peer: v4, route: Route{Prefix: netip.MustParsePrefix("203.0.113.0/24"), LocalPref: 150,
			Communities: []Community{{Global: 65535, Local1: 65281}, {Large: true, Global: 64500, Local1: 1, Local2: 2}}}},
		{name: "export_v6_over_v4", peer: v4, route: Route{Prefix: netip.MustParsePrefix("2001:db8:5::7/128")}},
		// Graceful shutdown (RFC 8326): 65535:0 added, the route's own
		// local preference dropped (the path's LOCAL_PREF 0 goes out).
		{name: "export_v4_shutdown", peer: v4, gshut: true, route: Route{Prefix: netip.MustParsePrefix("203.0.113.0/24"), LocalPref: 150,
			Communities: []Community{{Global: 65000, Local1: 100}, {Large: true, Global: 64500, Local1: 1, Local2: 2}}}},
		{name: "export_v4_shutdown_once", peer: v4, gshut: true, route: Route{Prefix: netip.MustParsePrefix("203.0.113.0/24"),
			Communities: []Community{GracefulShutdownCommunity}}},
		{name: "v4 over v6 without next hop", peer: Peer{Address: netip.MustParseAddr("2001:db8::fe")},
			route: Route{Prefix: netip.MustParsePrefix("203.0.113.7/32")}, wantErr: "needs a next hop of its family"},
		{name: "v6 over single-family v4", peer: Peer{Address: v4.Address, DisableMP: true},
			route: Route{Prefix: netip.MustParsePrefix("2001:db8:5::7/128")}, wantErr: "one family only"},
		{name: "next hop of the wrong family", peer: Peer{Address: v4.Address, NextHopV6: v4.Address},
			route: Route{Prefix: netip.MustParsePrefix("2001:db8:5::7/128")}, wantErr: "needs a next hop"},
		// RFC 8950: the node's link-local address is the next hop of
		// IPv4 routes too.
		{name: "export_v4_unnumbered", peer: unnumbered, route: Route{Prefix: netip.MustParsePrefix("203.0.113.7/32")}},
		{name: "export_v6_unnumbered", peer: unnumbered, route: Route{Prefix: netip.MustParsePrefix("2001:db8:5::7/128")}},
		{name: "unnumbered without a link-local next hop", peer: Peer{Interface: "eth1", Address: unnumbered.Address, NextHopV6: netip.MustParseAddr("2001:db8::1")},
			route: Route{Prefix: netip.MustParsePrefix("203.0.113.7/32")}, wantErr: "link-local address"},
		{name: "v4 over single-family unnumbered", peer: Peer{Interface: "eth1", Address: unnumbered.Address, NextHopV6: unnumbered.NextHopV6, DisableMP: true},
			route: Route{Prefix: netip.MustParsePrefix("203.0.113.7/32")}, wantErr: "one family only"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, err := groupOf(tc.peer, tc.route)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.gshut {
				g = g.shuttingDown()
			}
			golden(t, tc.name, exportPolicy(7, 3, g))
		})
	}
}

func TestAPIPath(t *testing.T) {
	for name, tc := range map[string]struct {
		prefix   netip.Prefix
		tags     []tag
		zeroPref bool
	}{
		"path_v4_tagged": {netip.MustParsePrefix("203.0.113.0/24"), []tag{{peer: 1, group: 1}, {peer: 7, group: 3}}, false},
		"path_v6":        {netip.MustParsePrefix("2001:db8:5::7/128"), nil, false},
		// Graceful shutdown: LOCAL_PREF 0 in the path itself.
		"path_v4_shutdown": {netip.MustParsePrefix("203.0.113.0/24"), []tag{{peer: 1, group: 2}}, true},
	} {
		t.Run(name, func(t *testing.T) {
			p, err := apiPath(tc.prefix, tc.tags, tc.zeroPref)
			if err != nil {
				t.Fatal(err)
			}
			goldenJSON(t, name, p)
		})
	}
}

// TestSpeakerWithoutRouter checks the bookkeeping against GoBGP with no
// router to talk to: peers added, changed and removed, routes kept for a
// peer set later, refused routes reported, one server for peers of one
// router ID and distinct addresses, nothing listening.
func TestSpeakerWithoutRouter(t *testing.T) {
	ctx := context.Background()
	if err := New(Options{ASN: 1}).Start(ctx); err == nil {
		t.Error("a speaker without a router ID started")
	}
	sp := New(Options{RouterID: netip.MustParseAddr("192.0.2.1"), ASN: 64500, Logger: logr.Discard()})
	if err := sp.SetPeers(ctx, nil); err == nil {
		t.Error("SetPeers before Start succeeded")
	}
	if err := sp.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sp.Stop(ctx) }()
	// 192.0.2.0/24 is TEST-NET-1; port 9 on loopback: nothing answers and
	// no packet leaves the machine.
	a := Peer{Name: "a", Address: netip.MustParseAddr("127.0.0.1"), Port: 9, ASN: 64501, NextHopV6: netip.MustParseAddr("2001:db8::1")}
	b := Peer{Name: "b", Address: netip.MustParseAddr("::1"), Port: 9, ASN: 64501, DisableMP: true}
	p7, p8, p9 := netip.MustParsePrefix("203.0.113.7/32"), netip.MustParsePrefix("203.0.113.8/32"), netip.MustParsePrefix("203.0.113.9/32")
	v6 := netip.MustParsePrefix("2001:db8::/64")
	if err := sp.SetRoutes(ctx, map[string][]Route{"a": {{Prefix: p7}}}); err != nil {
		t.Fatal(err)
	}
	if err := sp.SetPeers(ctx, []Peer{a, b}); err != nil {
		t.Fatal(err)
	}
	if got := rib(sp); len(got) != 1 || len(got[0]) != 1 {
		t.Errorf("routes set before the peer: RIBs %v, want one server with 1 path", got)
	}
	err := sp.SetRoutes(ctx, map[string][]Route{
		"a": {{Prefix: p7}, {Prefix: p8}, {Prefix: v6}},
		"b": {{Prefix: p9}, {Prefix: v6, LocalPref: 200}},
	})
	if err == nil || !strings.Contains(err.Error(), "routes to peer b: prefix 203.0.113.9/32: the session with ::1 carries one family only") {
		t.Errorf("error %v, want the refused IPv4 route over the single-family IPv6 session", err)
	}
	aID, bID := sp.peers["a"].id, sp.peers["b"].id
	// One path per prefix, tagged for each peer it goes to with the
	// statement of its attributes (a's IPv6 route needs a next hop).
	want := map[netip.Prefix][]tag{p7: {{aID, 1}}, p8: {{aID, 1}}, v6: {{aID, 2}, {bID, 1}}}
	if diff := cmp.Diff([]map[netip.Prefix][]tag{want}, rib(sp), cmp.AllowUnexported(tag{})); diff != "" {
		t.Errorf("paths and their tags (-want +got):\n%s", diff)
	}
	a.HoldTime = 30 * time.Second
	if err := sp.SetPeers(ctx, []Peer{a, {Name: "c", Address: netip.MustParseAddr("127.0.0.5"), Port: 9}, {Name: "c"}}); err == nil || !strings.Contains(err.Error(), "peer c is listed twice") {
		t.Errorf("error %v, want the duplicate peer", err)
	}
	// a changed: a new member (new tag ID), its routes re-tagged; b gone:
	// its tags too.
	if m := sp.peers["a"]; m == nil || m.peer.HoldTime != 30*time.Second || m.id == aID {
		t.Fatalf("changed peer a: %+v (old ID %d)", m, aID)
	}
	aID = sp.peers["a"].id
	want = map[netip.Prefix][]tag{p7: {{aID, 1}}, p8: {{aID, 1}}, v6: {{aID, 2}}}
	if diff := cmp.Diff([]map[netip.Prefix][]tag{want}, rib(sp), cmp.AllowUnexported(tag{})); diff != "" {
		t.Errorf("paths after a changed and b removed (-want +got):\n%s", diff)
	}
	st := sp.Peers()
	if len(st) != 2 || st[0].Peer != "a" || st[0].Up || st[1].Peer != "c" {
		t.Errorf("statuses %+v", st)
	}
	// Same address as a (another source address) or another router ID:
	// another server each.
	c := Peer{Name: "c", Address: a.Address, SourceAddress: netip.MustParseAddr("127.0.0.2"), Port: 9, ASN: 64501}
	d := Peer{Name: "d", Address: netip.MustParseAddr("127.0.0.3"), Port: 9, ASN: 64501, RouterID: netip.MustParseAddr("192.0.2.9")}
	e := Peer{Name: "e", Address: netip.MustParseAddr("127.0.0.4"), Port: 9, ASN: 64501}
	if err := sp.SetPeers(ctx, []Peer{a, c, d, e}); err != nil {
		t.Fatal(err)
	}
	if got := servers(sp); got != 3 {
		t.Errorf("%d GoBGP servers, want 3 (a and e; c; d)", got)
	}
	if err := sp.SetPeers(ctx, []Peer{a}); err != nil {
		t.Fatal(err)
	}
	if got := servers(sp); got != 1 {
		t.Errorf("%d GoBGP servers running, want 1", got)
	}
	// b comes back, on the running server, with the routes kept for it
	// (one still refused).
	if err := sp.SetPeers(ctx, []Peer{a, b}); err == nil || !strings.Contains(err.Error(), "one family only") {
		t.Errorf("error %v, want b's refused route again", err)
	}
	if got := servers(sp); got != 1 {
		t.Errorf("%d GoBGP servers, want 1", got)
	}
}

// rib is what each server's RIB holds: prefix → the tags of its path.
func rib(sp *Speaker) []map[netip.Prefix][]tag {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	var out []map[netip.Prefix][]tag
	for _, inst := range sp.instances {
		m := map[netip.Prefix][]tag{}
		for _, f := range []bgppkt.Family{bgppkt.RF_IPv4_UC, bgppkt.RF_IPv6_UC} {
			_ = inst.srv.ListPath(apiutil.ListPathRequest{TableType: apipb.TableType_TABLE_TYPE_GLOBAL, Family: f}, func(nlri bgppkt.NLRI, paths []*apiutil.Path) {
				prefix := netip.MustParsePrefix(nlri.String())
				for _, p := range paths {
					var tags []tag
					for _, a := range p.Attrs {
						if lc, ok := a.(*bgppkt.PathAttributeLargeCommunities); ok {
							for _, c := range lc.Values {
								tags = append(tags, tag{peer: c.LocalData1, group: c.LocalData2})
							}
						}
					}
					m[prefix] = tags
				}
			})
		}
		out = append(out, m)
	}
	return out
}

func TestPeerCheck(t *testing.T) {
	ll := netip.MustParseAddr("fe80::1")
	for _, tc := range []struct {
		name    string
		peer    Peer
		wantErr string
	}{
		{"numbered", Peer{Name: "a", Address: netip.MustParseAddr("198.51.100.1")}, ""},
		{"no address", Peer{Name: "a"}, "no address"},
		{"unnumbered before the router is heard", Peer{Name: "a", Interface: "eth1"}, ""},
		{"unnumbered", Peer{Name: "a", Interface: "eth1", Address: ll}, ""},
		{"unnumbered with a zone", Peer{Name: "a", Interface: "eth1", Address: ll.WithZone("eth1")}, "has a zone"},
		{"unnumbered with a global address", Peer{Name: "a", Interface: "eth1", Address: netip.MustParseAddr("2001:db8::1")}, "not an IPv6 link-local address"},
		{"unnumbered with a source address", Peer{Name: "a", Interface: "eth1", Address: ll, SourceAddress: netip.MustParseAddr("fe80::2")}, "source address for an unnumbered peer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.peer.Check()
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("Check() = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestGracefulShutdownWithoutRouter checks the bookkeeping of graceful
// shutdown: the paths move to shutting-down statements with LOCAL_PREF 0
// in the path, and back; nothing is established, so nothing to wait for.
func TestGracefulShutdownWithoutRouter(t *testing.T) {
	ctx := context.Background()
	sp := New(Options{RouterID: netip.MustParseAddr("192.0.2.1"), ASN: 64500, Logger: logr.Discard()})
	if _, err := sp.SetGracefulShutdown(ctx, true); err == nil {
		t.Error("SetGracefulShutdown before Start succeeded")
	}
	if err := sp.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sp.Stop(ctx) }()
	a := Peer{Name: "a", Address: netip.MustParseAddr("127.0.0.1"), Port: 9, ASN: 64501}
	p7 := netip.MustParsePrefix("203.0.113.7/32")
	if err := sp.SetPeers(ctx, []Peer{a}); err != nil {
		t.Fatal(err)
	}
	if err := sp.SetRoutes(ctx, map[string][]Route{"a": {{Prefix: p7, LocalPref: 150}}}); err != nil {
		t.Fatal(err)
	}
	id := sp.peers["a"].id
	for _, step := range []struct {
		on        bool
		group     uint32
		zeroPref  bool
		community bool
	}{{true, 2, true, true}, {false, 1, false, false}, {true, 2, true, true}} {
		n, err := sp.SetGracefulShutdown(ctx, step.on)
		if err != nil || n != 0 {
			t.Fatalf("SetGracefulShutdown(%v) = %d, %v; want 0 sessions to wait for (none established)", step.on, n, err)
		}
		want := map[netip.Prefix][]tag{p7: {{id, step.group}}}
		if diff := cmp.Diff([]map[netip.Prefix][]tag{want}, rib(sp), cmp.AllowUnexported(tag{})); diff != "" {
			t.Errorf("graceful shutdown %v: paths (-want +got):\n%s", step.on, diff)
		}
		if got := hasZeroLocalPref(t, sp, p7); got != step.zeroPref {
			t.Errorf("graceful shutdown %v: path with LOCAL_PREF 0 %v, want %v", step.on, got, step.zeroPref)
		}
		g := sp.peers["a"].groups
		var gshut group
		for k, v := range g {
			if v == step.group {
				gshut = k
			}
		}
		if got := strings.Contains(gshut.standard, gshutCommunity); got != step.community || (step.on && gshut.localPref != 0) {
			t.Errorf("graceful shutdown %v: statement %+v", step.on, gshut)
		}
	}
	// Stop ends it: a restarted speaker sends the routes as set.
	if err := sp.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if sp.gshut {
		t.Error("graceful shutdown still on after Stop")
	}
}

// hasZeroLocalPref tells whether the RIB's path to prefix carries
// LOCAL_PREF 0.
func hasZeroLocalPref(t *testing.T, sp *Speaker, prefix netip.Prefix) bool {
	t.Helper()
	sp.mu.Lock()
	defer sp.mu.Unlock()
	found := false
	for _, inst := range sp.instances {
		_ = inst.srv.ListPath(apiutil.ListPathRequest{TableType: apipb.TableType_TABLE_TYPE_GLOBAL, Family: bgppkt.RF_IPv4_UC}, func(nlri bgppkt.NLRI, paths []*apiutil.Path) {
			if nlri.String() != prefix.String() {
				return
			}
			for _, p := range paths {
				for _, a := range p.Attrs {
					if lp, ok := a.(*bgppkt.PathAttributeLocalPref); ok && lp.Value == 0 {
						found = true
					}
				}
			}
		})
	}
	return found
}
