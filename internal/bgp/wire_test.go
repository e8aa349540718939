package bgp

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/barelb/barelb/internal/config"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// golden compares m, as indented JSON with stable formatting, with
// testdata/NAME.json.
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
	path := filepath.Join("testdata", name+".json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run with -update after checking):\n%s", path, got)
	}
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
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { golden(t, tc.name, apiPeer(tc.peer)) })
	}
}

func TestAPIPath(t *testing.T) {
	v4 := Peer{Address: netip.MustParseAddr("198.51.100.254"), NextHopV6: netip.MustParseAddr("2001:db8:100::1")}
	tests := []struct {
		name    string
		peer    Peer
		route   Route
		wantErr string
	}{
		{name: "path_v4_attributes", peer: v4, route: Route{Prefix: netip.MustParsePrefix("203.0.113.0/24"), LocalPref: 150,
			Communities: []config.Community{config.StandardCommunity(65535, 65281), config.LargeCommunity(64500, 1, 2)}}},
		{name: "path_v6_over_v4", peer: v4, route: Route{Prefix: netip.MustParsePrefix("2001:db8:5::7/128")}},
		{name: "v4 over v6 without next hop", peer: Peer{Address: netip.MustParseAddr("2001:db8::fe")},
			route: Route{Prefix: netip.MustParsePrefix("203.0.113.7/32")}, wantErr: "needs a next hop of its family"},
		{name: "v6 over single-family v4", peer: Peer{Address: v4.Address, DisableMP: true},
			route: Route{Prefix: netip.MustParsePrefix("2001:db8:5::7/128")}, wantErr: "one family only"},
		{name: "next hop of the wrong family", peer: Peer{Address: v4.Address, NextHopV6: v4.Address},
			route: Route{Prefix: netip.MustParsePrefix("2001:db8:5::7/128")}, wantErr: "needs a next hop"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := apiPath(tc.peer, tc.route)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, p)
		})
	}
}

// TestSpeakerWithoutRouter checks the bookkeeping against GoBGP with no
// router to talk to: peers added, changed and removed, routes kept for a
// peer set later, refused routes reported, nothing listening.
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
	a := Peer{Name: "a", Address: netip.MustParseAddr("127.0.0.1"), Port: 9, ASN: 64501}
	b := Peer{Name: "b", Address: netip.MustParseAddr("::1"), Port: 9, ASN: 64501, DisableMP: true}
	if err := sp.SetRoutes(ctx, map[string][]Route{"a": {{Prefix: netip.MustParsePrefix("203.0.113.7/32")}}}); err != nil {
		t.Fatal(err)
	}
	if err := sp.SetPeers(ctx, []Peer{a, b}); err != nil {
		t.Fatal(err)
	}
	if got := len(sp.sessions["a"].routes); got != 1 {
		t.Errorf("routes set before the peer: %d installed, want 1", got)
	}
	err := sp.SetRoutes(ctx, map[string][]Route{
		"a": {{Prefix: netip.MustParsePrefix("203.0.113.7/32")}, {Prefix: netip.MustParsePrefix("203.0.113.8/32")}},
		"b": {{Prefix: netip.MustParsePrefix("203.0.113.9/32")}, {Prefix: netip.MustParsePrefix("2001:db8::/64")}},
	})
	if err == nil || !strings.Contains(err.Error(), "routes to peer b: prefix 203.0.113.9/32: the session with ::1 carries one family only") {
		t.Errorf("error %v, want the refused IPv4 route over the single-family IPv6 session", err)
	}
	if got := len(sp.sessions["a"].routes) + len(sp.sessions["b"].routes); got != 3 {
		t.Errorf("%d routes installed, want 3", got)
	}
	first := sp.sessions["a"]
	a.HoldTime = 30 * time.Second
	if err := sp.SetPeers(ctx, []Peer{a, {Name: "c", Address: netip.MustParseAddr("127.0.0.1")}, {Name: "c"}}); err == nil || !strings.Contains(err.Error(), "peer c is listed twice") {
		t.Errorf("error %v, want the duplicate peer", err)
	}
	if sp.sessions["a"] != first || sp.sessions["a"].peer.HoldTime != 30*time.Second || len(sp.sessions["a"].routes) != 2 {
		t.Errorf("changed peer: session %p (was %p), %+v", sp.sessions["a"], first, sp.sessions["a"].peer)
	}
	if _, ok := sp.sessions["b"]; ok || len(sp.idle) != 0 {
		t.Errorf("removed peer still there, or its server not reused for c: %d idle", len(sp.idle))
	}
	st := sp.Peers()
	if len(st) != 2 || st[0].Peer != "a" || st[0].Up || st[1].Peer != "c" {
		t.Errorf("statuses %+v", st)
	}
	// b comes back on c's server, with the routes kept for it (one still
	// refused).
	if err := sp.SetPeers(ctx, []Peer{a, b}); err == nil || !strings.Contains(err.Error(), "one family only") {
		t.Errorf("error %v, want b's refused route again", err)
	}
	if len(sp.idle) != 0 || len(sp.sessions["b"].routes) != 1 {
		t.Errorf("%d idle servers (want 0: c's reused for b), b has %d routes (want 1)", len(sp.idle), len(sp.sessions["b"].routes))
	}
}
