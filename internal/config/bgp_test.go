package config

import (
	"github.com/google/go-cmp/cmp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
)

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

func apiPeer(mutate func(*barelbv1beta1.BGPPeerSpec)) *barelbv1beta1.BGPPeer {
	p := &barelbv1beta1.BGPPeer{
		ObjectMeta: metav1.ObjectMeta{Name: "tor", Namespace: "barelb-system"},
		Spec:       barelbv1beta1.BGPPeerSpec{MyASN: 64500, PeerASN: 64501, PeerAddress: "198.51.100.254"},
	}
	if mutate != nil {
		mutate(&p.Spec)
	}
	return p
}

func TestBGPPeerFromAPI(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*barelbv1beta1.BGPPeerSpec)
		opts    BGPPeerOptions
		check   func(t *testing.T, p *BGPPeer)
		wantErr string
	}{
		{name: "defaults", check: func(t *testing.T, p *BGPPeer) {
			if p.Port != 179 || p.HoldTime != 90*time.Second || p.KeepaliveTime != 30*time.Second || p.ConnectTime != 5*time.Second {
				t.Errorf("defaults: port %d hold %s keepalive %s connect %s", p.Port, p.HoldTime, p.KeepaliveTime, p.ConnectTime)
			}
			if p.IsInternal() || p.Address.String() != "198.51.100.254" || p.SourceAddress.IsValid() || p.RouterID.IsValid() {
				t.Errorf("unexpected %+v", p)
			}
			if !p.SelectsNode(labels.Set{"any": "node"}) {
				t.Error("no node selector must select every node")
			}
		}},
		{name: "everything set", mutate: func(s *barelbv1beta1.BGPPeerSpec) {
			s.PeerPort = 1179
			s.SourceAddress = "198.51.100.1"
			s.RouterID = "10.0.0.1"
			s.HoldTime, s.KeepaliveTime, s.ConnectTime = dur(9*time.Second), dur(3*time.Second), dur(2*time.Second)
			s.EBGPMultiHop = true
			s.PasswordSecret = &barelbv1beta1.SecretRef{Name: "md5"}
			s.EnableGracefulRestart, s.DisableMP = true, true
			s.BFDProfile = "fast"
			s.NodeSelectors = []barelbv1beta1.Selector{{MatchLabels: map[string]barelbv1beta1.LabelValue{"rack": "a"}}}
		}, opts: BGPPeerOptions{BFDProfiles: map[string]bool{"fast": true}}, check: func(t *testing.T, p *BGPPeer) {
			want := &BGPPeer{Name: "tor", MyASN: 64500, PeerASN: 64501, Address: p.Address, Port: 1179,
				SourceAddress: p.SourceAddress, RouterID: p.RouterID, HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second,
				ConnectTime: 2 * time.Second, EBGPMultiHop: true, PasswordSecret: &SecretRef{Namespace: "barelb-system", Name: "md5"},
				GracefulRestart: true, DisableMP: true, NodeSelectors: p.NodeSelectors, BFDProfile: "fast"}
			if diff := cmp.Diff(want, p, cmpOpts); diff != "" {
				t.Errorf("BGPPeerFromAPI (-want +got):\n%s", diff)
			}
			if p.SourceAddress.String() != "198.51.100.1" || p.RouterID.String() != "10.0.0.1" {
				t.Errorf("addresses %s %s", p.SourceAddress, p.RouterID)
			}
			if p.SelectsNode(labels.Set{"rack": "b"}) || !p.SelectsNode(labels.Set{"rack": "a"}) {
				t.Error("node selector not applied")
			}
		}},
		{name: "iBGP", mutate: func(s *barelbv1beta1.BGPPeerSpec) { s.PeerASN = 64500 }, check: func(t *testing.T, p *BGPPeer) {
			if !p.IsInternal() {
				t.Error("same ASN must be iBGP")
			}
		}},
		{name: "dynamic internal", mutate: func(s *barelbv1beta1.BGPPeerSpec) { s.PeerASN, s.DynamicASN = 0, "internal" }, check: func(t *testing.T, p *BGPPeer) {
			if !p.IsInternal() || p.PeerASN != 0 || p.DynamicASN != DynamicASNInternal {
				t.Errorf("got %+v", p)
			}
		}},
		{name: "dynamic external", mutate: func(s *barelbv1beta1.BGPPeerSpec) { s.PeerASN, s.DynamicASN = 0, "external" }, check: func(t *testing.T, p *BGPPeer) {
			if p.IsInternal() {
				t.Error("dynamic external is eBGP")
			}
		}},
		{name: "keepalive a third of hold, whole seconds", mutate: func(s *barelbv1beta1.BGPPeerSpec) { s.HoldTime = dur(10 * time.Second) }, check: func(t *testing.T, p *BGPPeer) {
			if p.KeepaliveTime != 3*time.Second {
				t.Errorf("keepalive %s", p.KeepaliveTime)
			}
		}},
		{name: "hold 0 means no keepalives", mutate: func(s *barelbv1beta1.BGPPeerSpec) { s.HoldTime = dur(0) }, check: func(t *testing.T, p *BGPPeer) {
			if p.HoldTime != 0 || p.KeepaliveTime != 0 {
				t.Errorf("hold %s keepalive %s", p.HoldTime, p.KeepaliveTime)
			}
		}},
		{name: "IPv4-mapped peer address is IPv4", mutate: func(s *barelbv1beta1.BGPPeerSpec) { s.PeerAddress = "::ffff:198.51.100.254" }, check: func(t *testing.T, p *BGPPeer) {
			if !p.Address.Is4() {
				t.Errorf("address %s", p.Address)
			}
		}},
		{name: "unnumbered", mutate: func(s *barelbv1beta1.BGPPeerSpec) { s.PeerAddress, s.Interface = "", "eth1" }, check: func(t *testing.T, p *BGPPeer) {
			if p.Address.IsValid() || p.Interface != "eth1" {
				t.Errorf("got %+v", p)
			}
		}},

		{name: "no myASN", mutate: func(s *barelbv1beta1.BGPPeerSpec) { s.MyASN = 0 }, wantErr: "myASN"},
		{name: "both ASN kinds", mutate: func(s *barelbv1beta1.BGPPeerSpec) { s.DynamicASN = "internal" }, wantErr: "not both"},
		{name: "no peer ASN", mutate: func(s *barelbv1beta1.BGPPeerSpec) { s.PeerASN = 0 }, wantErr: "exactly one of peerASN and dynamicASN"},
		{name: "bad dynamic ASN", mutate: func(s *barelbv1beta1.BGPPeerSpec) { s.PeerASN, s.DynamicASN = 0, "both" }, wantErr: "must be internal or external"},
		{name: "multihop on iBGP", mutate: func(s *barelbv1beta1.BGPPeerSpec) { s.PeerASN, s.EBGPMultiHop = 64500, true }, wantErr: "ebgpMultiHop applies to eBGP peers only"},
		{name: "multihop on dynamic internal", mutate: func(s *barelbv1beta1.BGPPeerSpec) { s.PeerASN, s.DynamicASN, s.EBGPMultiHop = 0, "internal", true }, wantErr: "dynamicASN internal"},
		{name: "address and interface", mutate: func(s *barelbv1beta1.BGPPeerSpec) { s.Interface = "eth0" }, wantErr: "peerAddress and interface, not both"},
		{name: "neither address nor interface", mutate: func(s *barelbv1beta1.BGPPeerSpec) { s.PeerAddress = "" }, wantErr: "peerAddress and interface"},
		{name: "bad address", mutate: func(s *barelbv1beta1.BGPPeerSpec) { s.PeerAddress = "router" }, wantErr: `peerAddress: "router" is not an IP address`},
		{name: "zoned address", mutate: func(s *barelbv1beta1.BGPPeerSpec) { s.PeerAddress = "fe80::1%eth0" }, wantErr: "zone"},
		{name: "source of the other family", mutate: func(s *barelbv1beta1.BGPPeerSpec) { s.SourceAddress = "2001:db8::1" }, wantErr: "different families"},
		{name: "IPv6 router ID", mutate: func(s *barelbv1beta1.BGPPeerSpec) { s.RouterID = "2001:db8::1" }, wantErr: "routerID"},
		{name: "hold too short", mutate: func(s *barelbv1beta1.BGPPeerSpec) { s.HoldTime = dur(2 * time.Second) }, wantErr: "holdTime 2s must be 0 or from 3s"},
		{name: "hold not whole", mutate: func(s *barelbv1beta1.BGPPeerSpec) { s.HoldTime = dur(3500 * time.Millisecond) }, wantErr: "whole seconds"},
		{name: "keepalive not below hold", mutate: func(s *barelbv1beta1.BGPPeerSpec) {
			s.HoldTime, s.KeepaliveTime = dur(9*time.Second), dur(9*time.Second)
		}, wantErr: "less than holdTime"},
		{name: "keepalive below default hold", mutate: func(s *barelbv1beta1.BGPPeerSpec) { s.KeepaliveTime = dur(90 * time.Second) }, wantErr: "less than holdTime 1m30s"},
		{name: "keepalive with hold 0", mutate: func(s *barelbv1beta1.BGPPeerSpec) { s.HoldTime, s.KeepaliveTime = dur(0), dur(time.Second) }, wantErr: "must be 0 when holdTime is 0"},
		{name: "connect 0", mutate: func(s *barelbv1beta1.BGPPeerSpec) { s.ConnectTime = dur(0) }, wantErr: "connectTime 0s must be from 1s"},
		{name: "password twice", mutate: func(s *barelbv1beta1.BGPPeerSpec) {
			s.Password, s.PasswordSecret = "x", &barelbv1beta1.SecretRef{Name: "md5"}
		}, wantErr: "password or passwordSecret, not both"},
		{name: "secret elsewhere", mutate: func(s *barelbv1beta1.BGPPeerSpec) {
			s.PasswordSecret = &barelbv1beta1.SecretRef{Name: "md5", Namespace: "default"}
		}, wantErr: `must be in the peer's own namespace "barelb-system"`},
		{name: "unknown BFD profile", mutate: func(s *barelbv1beta1.BGPPeerSpec) { s.BFDProfile = "slow" },
			opts: BGPPeerOptions{BFDProfiles: map[string]bool{"fast": true}}, wantErr: `bfdProfile "slow": no such BFDProfile`},
		{name: "bad node selector", mutate: func(s *barelbv1beta1.BGPPeerSpec) {
			s.NodeSelectors = []barelbv1beta1.Selector{{MatchExpressions: []barelbv1beta1.SelectorRequirement{{Key: "a", Operator: "In"}}}}
		}, wantErr: "nodeSelectors[0]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := BGPPeerFromAPI(apiPeer(tc.mutate), tc.opts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "BGPPeer tor: ") {
					t.Fatalf("error %v, want one naming the peer and containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, p)
		})
	}
}

func apiCommunity(name string, aliases ...string) barelbv1beta1.Community {
	c := barelbv1beta1.Community{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for i := 0; i+1 < len(aliases); i += 2 {
		c.Spec.Communities = append(c.Spec.Communities, barelbv1beta1.CommunityAlias{Name: aliases[i], Value: barelbv1beta1.CommunityValue(aliases[i+1])})
	}
	return c
}

func TestCommunityAliases(t *testing.T) {
	got, errs := CommunityAliases([]barelbv1beta1.Community{
		apiCommunity("a", "no-export", "65535:65281", "big", "large:64500:1:2", "clash", "1:1", "broken", "1:70000"),
		apiCommunity("b", "no-export", "65535:65281", "clash", "1:2", "bad:name", "1:1"),
	})
	want := map[string]Community{"no-export": StandardCommunity(65535, 65281), "big": LargeCommunity(64500, 1, 2)}
	if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
		t.Errorf("aliases (-want +got):\n%s", diff)
	}
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	joined := strings.Join(msgs, "\n")
	for _, frag := range []string{`community a: broken: community "1:70000"`, `"bad:name" is not a valid community name`,
		`community name "clash" is defined with different values (1:1 in a; 1:2 in b)`} {
		if !strings.Contains(joined, frag) {
			t.Errorf("errors %q lack %q", joined, frag)
		}
	}
	if len(errs) != 3 {
		t.Errorf("%d errors, want 3: %q", len(errs), joined)
	}
}

func i32(v int32) *int32 { return &v }

func TestBGPAdvertisementFromAPI(t *testing.T) {
	aliases := map[string]Community{"no-export": StandardCommunity(65535, 65281), "big": LargeCommunity(64500, 1, 2)}
	tests := []struct {
		name    string
		spec    barelbv1beta1.BGPAdvertisementSpec
		want    *BGPAdvertisement
		wantErr string
	}{
		{name: "defaults", want: &BGPAdvertisement{Name: "adv", AggregationLength: 32, AggregationLengthV6: 128}},
		{name: "communities resolved, deduplicated, sorted", spec: barelbv1beta1.BGPAdvertisementSpec{
			AggregationLength: i32(24), AggregationLengthV6: i32(64), LocalPref: 150,
			Communities:    []barelbv1beta1.CommunityRef{"big", "64500:2", "no-export", "large:1:2:3", "65535:65281", "64500:1"},
			IPAddressPools: []string{"p"}, Peers: []string{"tor"},
		}, want: &BGPAdvertisement{Name: "adv", AggregationLength: 24, AggregationLengthV6: 64, LocalPref: 150,
			Communities: []Community{StandardCommunity(64500, 1), StandardCommunity(64500, 2), StandardCommunity(65535, 65281),
				LargeCommunity(1, 2, 3), LargeCommunity(64500, 1, 2)},
			Pools: map[string]bool{"p": true}, Peers: map[string]bool{"tor": true}}},
		{name: "unknown name", spec: barelbv1beta1.BGPAdvertisementSpec{Communities: []barelbv1beta1.CommunityRef{"nope"}}, wantErr: `unknown community name "nope"`},
		{name: "bad community", spec: barelbv1beta1.BGPAdvertisementSpec{Communities: []barelbv1beta1.CommunityRef{"1:2:3"}}, wantErr: `community "1:2:3" must be ASN:VALUE`},
		{name: "bad name", spec: barelbv1beta1.BGPAdvertisementSpec{Communities: []barelbv1beta1.CommunityRef{"-x"}}, wantErr: "neither a community"},
		{name: "aggregation too long", spec: barelbv1beta1.BGPAdvertisementSpec{AggregationLength: i32(33)}, wantErr: "aggregationLength 33"},
		{name: "aggregation v6 negative", spec: barelbv1beta1.BGPAdvertisementSpec{AggregationLengthV6: i32(-1)}, wantErr: "aggregationLengthV6 -1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := BGPAdvertisementFromAPI(&barelbv1beta1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "adv"}, Spec: tc.spec}, aliases)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "BGPAdvertisement adv: ") {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.PoolSelectors == nil {
				got.PoolSelectors = []labels.Selector{}
			}
			tc.want.PoolSelectors, tc.want.NodeSelectors, tc.want.ServiceSelectors = got.PoolSelectors, got.NodeSelectors, got.ServiceSelectors
			if diff := cmp.Diff(tc.want, got, cmpOpts); diff != "" {
				t.Errorf("BGPAdvertisementFromAPI (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBGPAdvertisementSelects(t *testing.T) {
	adv, err := BGPAdvertisementFromAPI(&barelbv1beta1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "adv"}, Spec: barelbv1beta1.BGPAdvertisementSpec{
		IPAddressPoolSelectors: []barelbv1beta1.Selector{{MatchLabels: map[string]barelbv1beta1.LabelValue{"tier": "public"}}},
		NodeSelectors:          []barelbv1beta1.Selector{{MatchLabels: map[string]barelbv1beta1.LabelValue{"edge": "true"}}},
		ServiceSelectors:       []barelbv1beta1.Selector{{MatchLabels: map[string]barelbv1beta1.LabelValue{"app": "web"}}},
		Peers:                  []string{"tor-a"},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := BGPAdvertisementFromAPI(&barelbv1beta1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "all"}}, nil)
	public := &Pool{Name: "p", Labels: labels.Set{"tier": "public"}}
	private := &Pool{Name: "q"}
	for _, tc := range []struct {
		name      string
		got, want bool
	}{
		{"pool by label", adv.CoversPool(public), true},
		{"pool without label", adv.CoversPool(private), false},
		{"every pool", all.CoversPool(private), true},
		{"node", adv.SelectsNode(labels.Set{"edge": "true"}), true},
		{"other node", adv.SelectsNode(nil), false},
		{"service", adv.SelectsService(labels.Set{"app": "web"}), true},
		{"other service", adv.SelectsService(labels.Set{"app": "db"}), false},
		{"peer", adv.SelectsPeer("tor-a"), true},
		{"other peer", adv.SelectsPeer("tor-b"), false},
		{"every peer", all.SelectsPeer("tor-b"), true},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %v", tc.name, tc.got)
		}
	}
}

func TestCheckAggregation(t *testing.T) {
	pool := mustPool(t, apiPool("p", nil, "198.51.100.0/26", "203.0.113.10-203.0.113.11", "2001:db8:1::/64"))
	tests := []struct {
		v4, v6  int32
		wantErr string
	}{
		{32, 128, ""},
		{31, 64, ""},
		{26, 64, "aggregationLength 26 is shorter than 203.0.113.10/31 of pool p"},
		{24, 128, "aggregationLength 24 is shorter than 198.51.100.0/26 of pool p"},
		{32, 48, "aggregationLengthV6 48 is shorter than 2001:db8:1::/64"},
	}
	for _, tc := range tests {
		adv := &BGPAdvertisement{Name: "a", AggregationLength: int(tc.v4), AggregationLengthV6: int(tc.v6)}
		err := adv.CheckAggregation(pool)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("/%d /%d: error %v, want %q", tc.v4, tc.v6, err, tc.wantErr)
		}
	}
}
