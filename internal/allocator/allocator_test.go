package allocator

import (
	"errors"
	"math"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go4.org/netipx"
)

// ranges parses "a-b" ranges and CIDR prefixes.
func ranges(t testing.TB, specs ...string) []netipx.IPRange {
	t.Helper()
	var out []netipx.IPRange
	for _, s := range specs {
		if strings.Contains(s, "/") {
			out = append(out, netipx.RangeOfPrefix(netip.MustParsePrefix(s)))
			continue
		}
		r, err := netipx.ParseIPRange(s)
		if err != nil {
			t.Fatalf("bad range %q: %v", s, err)
		}
		out = append(out, r)
	}
	return out
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// held is an address a service holds before the step under test.
type held struct {
	svc Service
	ip  string
}

func setUp(t *testing.T, pools []Pool, holdings []held) *Allocator {
	t.Helper()
	a := New()
	a.SetPools(pools)
	for _, h := range holdings {
		if err := a.Assign(h.svc, addr(h.ip), false); err != nil {
			t.Fatalf("setup: assign %s to %s: %v", h.ip, h.svc.Key, err)
		}
	}
	return a
}

func svc(key string) Service { return Service{Key: key} }

func shared(key, sharingKey string, cluster bool, selector string, ports ...Port) Service {
	return Service{Key: key, SharingKey: sharingKey, ClusterTraffic: cluster, Selector: selector, Ports: ports}
}

var (
	tcp80  = Port{Port: 80, Protocol: "TCP"}
	tcp443 = Port{Port: 443, Protocol: "TCP"}
	udp80  = Port{Port: 80, Protocol: "UDP"}
)

func TestAllocate(t *testing.T) {
	small := []Pool{{Name: "small", Ranges: ranges(t, "198.51.100.10-198.51.100.12")}}
	dual := []Pool{{Name: "dual", Ranges: ranges(t, "2001:db8::10-2001:db8::1f", "198.51.100.0/30")}}
	twoPools := []Pool{
		{Name: "a", Ranges: ranges(t, "198.51.100.10-198.51.100.10")},
		{Name: "b", Ranges: ranges(t, "198.51.100.20-198.51.100.29")},
	}
	tests := []struct {
		name     string
		pools    []Pool
		held     []held
		svc      Service
		family   Family
		from     []string
		wantIP   string
		wantPool string
		wantErr  error
	}{
		{
			name: "lowest address first", pools: small,
			svc: svc("ns/a"), family: IPv4, from: []string{"small"},
			wantIP: "198.51.100.10", wantPool: "small",
		},
		{
			name: "lowest free address skips held ones", pools: small,
			held: []held{{svc("ns/x"), "198.51.100.10"}, {svc("ns/y"), "198.51.100.12"}},
			svc:  svc("ns/a"), family: IPv4, from: []string{"small"},
			wantIP: "198.51.100.11", wantPool: "small",
		},
		{
			name:  "lowest address across unsorted ranges",
			pools: []Pool{{Name: "p", Ranges: ranges(t, "198.51.100.50-198.51.100.60", "198.51.100.5-198.51.100.6")}},
			svc:   svc("ns/a"), family: IPv4, from: []string{"p"},
			wantIP: "198.51.100.5", wantPool: "p",
		},
		{
			name:  "avoid buggy IPs skips .0",
			pools: []Pool{{Name: "p", Ranges: ranges(t, "198.51.100.0/24"), AvoidBuggyIPs: true}},
			svc:   svc("ns/a"), family: IPv4, from: []string{"p"},
			wantIP: "198.51.100.1", wantPool: "p",
		},
		{
			name:  "avoid buggy IPs skips .255",
			pools: []Pool{{Name: "p", Ranges: ranges(t, "198.51.99.255-198.51.100.0"), AvoidBuggyIPs: true}},
			svc:   svc("ns/a"), family: IPv4, from: []string{"p"},
			wantErr: ErrPoolsExhausted,
		},
		{
			name:  "buggy IPs allowed without the option",
			pools: []Pool{{Name: "p", Ranges: ranges(t, "198.51.100.0/24")}},
			svc:   svc("ns/a"), family: IPv4, from: []string{"p"},
			wantIP: "198.51.100.0", wantPool: "p",
		},
		{
			name:  "avoid buggy IPs does not touch IPv6",
			pools: []Pool{{Name: "p", Ranges: ranges(t, "2001:db8::/120"), AvoidBuggyIPs: true}},
			svc:   svc("ns/a"), family: IPv6, from: []string{"p"},
			wantIP: "2001:db8::", wantPool: "p",
		},
		{
			name: "caller's pool order wins over address order", pools: twoPools,
			svc: svc("ns/a"), family: IPv4, from: []string{"b", "a"},
			wantIP: "198.51.100.20", wantPool: "b",
		},
		{
			name: "next pool when the first is full", pools: twoPools,
			held: []held{{svc("ns/x"), "198.51.100.10"}},
			svc:  svc("ns/a"), family: IPv4, from: []string{"a", "b"},
			wantIP: "198.51.100.20", wantPool: "b",
		},
		{
			name: "IPv6 from a dual-stack pool", pools: dual,
			svc: svc("ns/a"), family: IPv6, from: []string{"dual"},
			wantIP: "2001:db8::10", wantPool: "dual",
		},
		{
			name: "IPv4 from a dual-stack pool", pools: dual,
			svc: svc("ns/a"), family: IPv4, from: []string{"dual"},
			wantIP: "198.51.100.0", wantPool: "dual",
		},
		{
			name: "stability: the held address is kept", pools: small,
			held: []held{{svc("ns/a"), "198.51.100.12"}},
			svc:  svc("ns/a"), family: IPv4, from: []string{"small"},
			wantIP: "198.51.100.12", wantPool: "small",
		},
		{
			name: "held address outside the listed pools is replaced", pools: twoPools,
			held: []held{{svc("ns/a"), "198.51.100.25"}},
			svc:  svc("ns/a"), family: IPv4, from: []string{"a"},
			wantIP: "198.51.100.10", wantPool: "a",
		},
		{
			name: "sharing: compatible cluster services share", pools: small,
			held: []held{{shared("ns/x", "k", true, "", tcp80), "198.51.100.11"}},
			svc:  shared("ns/a", "k", true, "", tcp443), family: IPv4, from: []string{"small"},
			wantIP: "198.51.100.11", wantPool: "small",
		},
		{
			name: "sharing: same protocol is needed for a port collision", pools: small,
			held: []held{{shared("ns/x", "k", true, "", tcp80), "198.51.100.11"}},
			svc:  shared("ns/a", "k", true, "", udp80), family: IPv4, from: []string{"small"},
			wantIP: "198.51.100.11", wantPool: "small",
		},
		{
			name: "sharing: Local services selecting the same pods share", pools: small,
			held: []held{{shared("ns/x", "k", false, "app=web", tcp80), "198.51.100.11"}},
			svc:  shared("ns/a", "k", false, "app=web", tcp443), family: IPv4, from: []string{"small"},
			wantIP: "198.51.100.11", wantPool: "small",
		},
		{
			name: "sharing: port collision gets a fresh address", pools: small,
			held: []held{{shared("ns/x", "k", true, "", tcp80), "198.51.100.11"}},
			svc:  shared("ns/a", "k", true, "", tcp80), family: IPv4, from: []string{"small"},
			wantIP: "198.51.100.10", wantPool: "small",
		},
		{
			name: "sharing: different key gets a fresh address", pools: small,
			held: []held{{shared("ns/x", "k", true, "", tcp80), "198.51.100.11"}},
			svc:  shared("ns/a", "other", true, "", tcp443), family: IPv4, from: []string{"small"},
			wantIP: "198.51.100.10", wantPool: "small",
		},
		{
			name: "sharing: Local services selecting different pods share (the announcers hold endpoints of both)", pools: small,
			held: []held{{shared("ns/x", "k", false, "app=web", tcp80), "198.51.100.11"}},
			svc:  shared("ns/a", "k", false, "app=db", tcp443), family: IPv4, from: []string{"small"},
			wantIP: "198.51.100.11", wantPool: "small",
		},
		{
			name: "sharing: only addresses in the listed pools", pools: twoPools,
			held: []held{{shared("ns/x", "k", true, "", tcp80), "198.51.100.25"}},
			svc:  shared("ns/a", "k", true, "", tcp443), family: IPv4, from: []string{"a"},
			wantIP: "198.51.100.10", wantPool: "a",
		},
		{
			name: "sharing: only addresses of the family", pools: dual,
			held: []held{{shared("ns/x", "k", true, "", tcp80), "198.51.100.2"}},
			svc:  shared("ns/a", "k", true, "", tcp443), family: IPv6, from: []string{"dual"},
			wantIP: "2001:db8::10", wantPool: "dual",
		},
		{
			name:  "sharing: earliest pool, then lowest address",
			pools: append(slices.Clone(twoPools), Pool{Name: "c", Ranges: ranges(t, "198.51.100.30-198.51.100.39")}),
			held: []held{
				{shared("ns/x", "k", true, "", tcp80), "198.51.100.31"},
				{shared("ns/y", "k", true, "", tcp80), "198.51.100.28"},
				{shared("ns/z", "k", true, "", tcp80), "198.51.100.22"},
			},
			svc: shared("ns/a", "k", true, "", tcp443), family: IPv4, from: []string{"c", "b"},
			wantIP: "198.51.100.31", wantPool: "c",
		},
		{
			name:  "overlapping pools never double-assign",
			pools: []Pool{{Name: "wide", Ranges: ranges(t, "198.51.100.0/29")}, {Name: "narrow", Ranges: ranges(t, "198.51.100.2-198.51.100.3")}},
			held:  []held{{svc("ns/x"), "198.51.100.2"}},
			svc:   svc("ns/a"), family: IPv4, from: []string{"narrow"},
			wantIP: "198.51.100.3", wantPool: "narrow",
		},
		{
			name: "unknown pool", pools: small,
			svc: svc("ns/a"), family: IPv4, from: []string{"small", "nope"},
			wantErr: ErrUnknownPool,
		},
		{
			name: "no pools listed", pools: small,
			svc: svc("ns/a"), family: IPv4, from: nil,
			wantErr: ErrPoolsExhausted,
		},
		{
			name: "no range of the family", pools: small,
			svc: svc("ns/a"), family: IPv6, from: []string{"small"},
			wantErr: ErrNoFamily,
		},
		{
			name: "unsupported family", pools: small,
			svc: svc("ns/a"), family: 5, from: []string{"small"},
			wantErr: ErrNoFamily,
		},
		{
			name: "exhausted", pools: small,
			held: []held{{svc("ns/x"), "198.51.100.10"}, {svc("ns/y"), "198.51.100.11"}, {svc("ns/z"), "198.51.100.12"}},
			svc:  svc("ns/a"), family: IPv4, from: []string{"small"},
			wantErr: ErrPoolsExhausted,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := setUp(t, tt.pools, tt.held)
			ip, pool, err := a.Allocate(tt.svc, tt.family, tt.from)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Allocate() error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Allocate() error = %v", err)
			}
			if ip != addr(tt.wantIP) || pool != tt.wantPool {
				t.Fatalf("Allocate() = %s from %q, want %s from %q", ip, pool, tt.wantIP, tt.wantPool)
			}
			if got := a.Addresses(tt.svc.Key); !slices.Contains(got, ip) {
				t.Errorf("Addresses(%q) = %v, does not contain %s", tt.svc.Key, got, ip)
			}
			if !slices.Contains(a.Holders(ip), tt.svc.Key) {
				t.Errorf("Holders(%s) = %v, does not contain %s", ip, a.Holders(ip), tt.svc.Key)
			}
		})
	}
}

func TestAllocateErrorsNameTheProblem(t *testing.T) {
	a := New()
	a.SetPools([]Pool{{Name: "p", Ranges: ranges(t, "198.51.100.1-198.51.100.1")}})
	_, _, err := a.Allocate(svc("ns/a"), IPv4, []string{"missing"})
	if !errors.Is(err, ErrUnknownPool) || !strings.Contains(err.Error(), `"missing"`) || !strings.Contains(err.Error(), "ns/a") {
		t.Errorf("error %q should wrap ErrUnknownPool and name the pool and service", err)
	}
	if _, _, err := a.Allocate(Service{}, IPv4, []string{"p"}); err == nil {
		t.Error("Allocate with an empty key succeeded")
	}
	if err := a.Assign(Service{}, addr("198.51.100.1"), false); err == nil {
		t.Error("Assign with an empty key succeeded")
	}
	if err := a.Assign(svc("ns/a"), netip.Addr{}, true); err == nil {
		t.Error("Assign of the zero address succeeded")
	}
}

func TestAssign(t *testing.T) {
	pools := []Pool{
		{Name: "p", Ranges: ranges(t, "198.51.100.0/28", "2001:db8::/120")},
		{Name: "manual", Ranges: ranges(t, "203.0.113.0/28")},
	}
	tests := []struct {
		name        string
		held        []held
		svc         Service
		ip          string
		outside     bool
		wantErr     error
		wantHolder  string // for a *ConflictError
		wantReason  string // substring of ConflictError.Reason
		wantAddrs   []string
		wantHolders []string
	}{
		{
			name: "free address in a pool", svc: svc("ns/a"), ip: "198.51.100.5",
			wantAddrs: []string{"198.51.100.5"}, wantHolders: []string{"ns/a"},
		},
		{
			name: "address in a pool the caller would not auto-assign from", svc: svc("ns/a"), ip: "203.0.113.3",
			wantAddrs: []string{"203.0.113.3"}, wantHolders: []string{"ns/a"},
		},
		{
			name: "IPv4-mapped IPv6 counts as IPv4", svc: svc("ns/a"), ip: "::ffff:198.51.100.5",
			wantAddrs: []string{"198.51.100.5"}, wantHolders: []string{"ns/a"},
		},
		{
			name: "idempotent", held: []held{{svc("ns/a"), "198.51.100.5"}}, svc: svc("ns/a"), ip: "198.51.100.5",
			wantAddrs: []string{"198.51.100.5"}, wantHolders: []string{"ns/a"},
		},
		{
			name: "not in a pool", svc: svc("ns/a"), ip: "192.0.2.1",
			wantErr: ErrNotInPool,
		},
		{
			name: "outside pools when allowed", svc: svc("ns/a"), ip: "192.0.2.1", outside: true,
			wantAddrs: []string{"192.0.2.1"}, wantHolders: []string{"ns/a"},
		},
		{
			name: "second address of a family replaces the first",
			held: []held{{svc("ns/a"), "198.51.100.5"}, {svc("ns/a"), "2001:db8::5"}},
			svc:  svc("ns/a"), ip: "198.51.100.6",
			wantAddrs: []string{"198.51.100.6", "2001:db8::5"}, wantHolders: []string{"ns/a"},
		},
		{
			name: "conflict: holder has no sharing key",
			held: []held{{svc("ns/x"), "198.51.100.5"}},
			svc:  shared("ns/a", "k", true, ""), ip: "198.51.100.5",
			wantHolder: "ns/x", wantReason: "held without a sharing key",
		},
		{
			name: "conflict: requester has no sharing key",
			held: []held{{shared("ns/x", "k", true, ""), "198.51.100.5"}},
			svc:  svc("ns/a"), ip: "198.51.100.5",
			wantHolder: "ns/x", wantReason: "no sharing key",
		},
		{
			name: "conflict: sharing keys differ",
			held: []held{{shared("ns/x", "a", true, ""), "198.51.100.5"}},
			svc:  shared("ns/a", "b", true, ""), ip: "198.51.100.5",
			wantHolder: "ns/x", wantReason: `sharing key "b" differs`,
		},
		{
			name: "conflict: port in both",
			held: []held{{shared("ns/x", "k", true, "", tcp80), "198.51.100.5"}},
			svc:  shared("ns/a", "k", true, "", tcp443, tcp80), ip: "198.51.100.5",
			wantHolder: "ns/x", wantReason: "port 80/TCP is in both",
		},
		{
			// Local sharing across backends: the announcers must hold
			// endpoints of both (election.PlanL2, bgpplan).
			name: "sharing: Local services with different pods",
			held: []held{{shared("ns/x", "k", false, "app=a", tcp80), "198.51.100.5"}},
			svc:  shared("ns/a", "k", false, "app=b", tcp443), ip: "198.51.100.5",
			wantAddrs: []string{"198.51.100.5"}, wantHolders: []string{"ns/a", "ns/x"},
		},
		{
			name: "sharing: Cluster and Local with unknown selectors",
			held: []held{{shared("ns/x", "k", true, "", tcp80), "198.51.100.5"}},
			svc:  shared("ns/a", "k", false, "", tcp443), ip: "198.51.100.5",
			wantAddrs: []string{"198.51.100.5"}, wantHolders: []string{"ns/a", "ns/x"},
		},
		{
			name: "conflict: Local services with different pods, a port in both",
			held: []held{{shared("ns/x", "k", false, "app=a", tcp80), "198.51.100.5"}},
			svc:  shared("ns/a", "k", false, "app=b", tcp80), ip: "198.51.100.5",
			wantHolder: "ns/x", wantReason: "port 80/TCP is in both",
		},
		{
			name: "conflict names the incompatible holder among several",
			held: []held{
				{shared("ns/x", "k", true, "", tcp80), "198.51.100.5"},
				{shared("ns/y", "k", true, "", tcp443), "198.51.100.5"},
			},
			svc: shared("ns/a", "k", true, "", tcp443), ip: "198.51.100.5",
			wantHolder: "ns/y", wantReason: "port 443/TCP",
		},
		{
			name: "sharing: Cluster and Cluster",
			held: []held{{shared("ns/x", "k", true, "", tcp80), "198.51.100.5"}},
			svc:  shared("ns/a", "k", true, "", tcp443), ip: "198.51.100.5",
			wantAddrs: []string{"198.51.100.5"}, wantHolders: []string{"ns/a", "ns/x"},
		},
		{
			name: "sharing: Local and Local with the same pods",
			held: []held{{shared("ns/x", "k", false, "app=a", tcp80), "198.51.100.5"}},
			svc:  shared("ns/a", "k", false, "app=a", tcp443), ip: "198.51.100.5",
			wantAddrs: []string{"198.51.100.5"}, wantHolders: []string{"ns/a", "ns/x"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := setUp(t, pools, tt.held)
			before := a.Addresses(tt.svc.Key)
			err := a.Assign(tt.svc, addr(tt.ip), tt.outside)
			var conflict *ConflictError
			switch {
			case tt.wantHolder != "":
				if !errors.As(err, &conflict) {
					t.Fatalf("Assign() error = %v, want a *ConflictError", err)
				}
				if conflict.Holder != tt.wantHolder || !strings.Contains(conflict.Reason, tt.wantReason) || conflict.IP != addr(tt.ip).Unmap() {
					t.Fatalf("conflict = %+v, want holder %q and reason containing %q", conflict, tt.wantHolder, tt.wantReason)
				}
				if !strings.Contains(err.Error(), tt.wantHolder) {
					t.Errorf("error %q does not name the holder", err)
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Assign() error = %v, want %v", err, tt.wantErr)
				}
			case err != nil:
				t.Fatalf("Assign() error = %v", err)
			}
			if err != nil {
				if got := a.Addresses(tt.svc.Key); !slices.Equal(got, before) {
					t.Errorf("failed Assign changed Addresses from %v to %v", before, got)
				}
				return
			}
			if got := a.Addresses(tt.svc.Key); !slices.Equal(got, addrs(tt.wantAddrs...)) {
				t.Errorf("Addresses() = %v, want %v", got, tt.wantAddrs)
			}
			if got := a.Holders(addr(tt.ip)); !slices.Equal(got, tt.wantHolders) {
				t.Errorf("Holders() = %v, want %v", got, tt.wantHolders)
			}
		})
	}
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, addr(s))
	}
	return out
}

func TestReplacedAddressIsFreed(t *testing.T) {
	a := setUp(t, []Pool{{Name: "p", Ranges: ranges(t, "198.51.100.0/30")}}, []held{{svc("ns/a"), "198.51.100.0"}})
	if err := a.Assign(svc("ns/a"), addr("198.51.100.2"), false); err != nil {
		t.Fatal(err)
	}
	if h := a.Holders(addr("198.51.100.0")); h != nil {
		t.Errorf("replaced address still held by %v", h)
	}
	ip, _, err := a.Allocate(svc("ns/b"), IPv4, []string{"p"})
	if err != nil || ip != addr("198.51.100.0") {
		t.Errorf("Allocate() = %v, %v; want the replaced address 198.51.100.0", ip, err)
	}
}

func TestReleaseThenAllocateGetsLowest(t *testing.T) {
	tests := []struct {
		name    string
		release []string // services to release after ns/0..ns/5 got .0 .. .5
		want    string
	}{
		{name: "released below the cursor", release: []string{"ns/3", "ns/1"}, want: "198.51.100.1"},
		{name: "released at the top", release: []string{"ns/5"}, want: "198.51.100.5"},
		{name: "nothing released", want: "198.51.100.6"},
		{name: "everything released", release: []string{"ns/5", "ns/4", "ns/3", "ns/2", "ns/1", "ns/0"}, want: "198.51.100.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := New()
			a.SetPools([]Pool{{Name: "p", Ranges: ranges(t, "198.51.100.0/28")}})
			for i := range 6 {
				if _, _, err := a.Allocate(svc("ns/"+string(rune('0'+i))), IPv4, []string{"p"}); err != nil {
					t.Fatal(err)
				}
			}
			for _, key := range tt.release {
				a.Release(key)
			}
			ip, _, err := a.Allocate(svc("ns/new"), IPv4, []string{"p"})
			if err != nil || ip != addr(tt.want) {
				t.Fatalf("Allocate() = %v, %v; want %s", ip, err, tt.want)
			}
		})
	}
}

func TestReleaseFamily(t *testing.T) {
	a := setUp(t, []Pool{{Name: "p", Ranges: ranges(t, "198.51.100.0/28", "2001:db8::/120")}},
		[]held{{svc("ns/a"), "198.51.100.3"}, {svc("ns/a"), "2001:db8::3"}})
	a.ReleaseFamily("ns/a", IPv6)
	if got, want := a.Addresses("ns/a"), addrs("198.51.100.3"); !slices.Equal(got, want) {
		t.Errorf("after ReleaseFamily(IPv6) Addresses() = %v, want %v", got, want)
	}
	a.ReleaseFamily("ns/a", IPv6) // no-op
	a.ReleaseFamily("ns/a", 9)    // no-op
	a.Release("ns/none")          // no-op
	a.Release("ns/a")
	if got := a.Addresses("ns/a"); got != nil {
		t.Errorf("after Release Addresses() = %v, want none", got)
	}
	if h := a.Holders(addr("198.51.100.3")); h != nil {
		t.Errorf("released address still held by %v", h)
	}
}

func TestSharedAddressStaysUntilLastHolderLeaves(t *testing.T) {
	a := setUp(t, []Pool{{Name: "p", Ranges: ranges(t, "198.51.100.0/30")}}, []held{
		{shared("ns/a", "k", true, "", tcp80), "198.51.100.0"},
		{shared("ns/b", "k", true, "", tcp443), "198.51.100.0"},
	})
	a.Release("ns/a")
	if got := a.Holders(addr("198.51.100.0")); !slices.Equal(got, []string{"ns/b"}) {
		t.Fatalf("Holders() = %v, want [ns/b]", got)
	}
	ip, _, _ := a.Allocate(svc("ns/c"), IPv4, []string{"p"})
	if ip != addr("198.51.100.1") {
		t.Errorf("Allocate() = %s, want 198.51.100.1 (the shared address is still held)", ip)
	}
	a.Release("ns/b")
	ip, _, _ = a.Allocate(svc("ns/d"), IPv4, []string{"p"})
	if ip != addr("198.51.100.0") {
		t.Errorf("Allocate() = %s, want 198.51.100.0 after the last holder left", ip)
	}
}

func TestAllocateMovesServiceThatCanNoLongerShare(t *testing.T) {
	a := setUp(t, []Pool{{Name: "p", Ranges: ranges(t, "198.51.100.0/30")}}, []held{
		{shared("ns/a", "k", true, "", tcp80), "198.51.100.0"},
		{shared("ns/b", "k", true, "", tcp443), "198.51.100.0"},
	})
	// ns/b now also wants port 80, which ns/a has on the shared address.
	ip, _, err := a.Allocate(shared("ns/b", "k", true, "", tcp443, tcp80), IPv4, []string{"p"})
	if err != nil || ip != addr("198.51.100.1") {
		t.Fatalf("Allocate() = %v, %v; want a new address 198.51.100.1", ip, err)
	}
	if got := a.Holders(addr("198.51.100.0")); !slices.Equal(got, []string{"ns/a"}) {
		t.Errorf("old address holders = %v, want [ns/a]", got)
	}
}

func TestOrphans(t *testing.T) {
	a := New()
	a.SetPools([]Pool{{Name: "p", Ranges: ranges(t, "198.51.100.0/28", "198.51.100.32/28")}})
	for _, h := range []held{{svc("ns/b"), "198.51.100.33"}, {svc("ns/a"), "198.51.100.34"}, {svc("ns/c"), "198.51.100.1"}} {
		if err := a.Assign(h.svc, addr(h.ip), false); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Assign(svc("ns/d"), addr("192.0.2.1"), true); err != nil {
		t.Fatal(err)
	}
	if got, want := a.Orphans(), []string{"ns/d"}; !slices.Equal(got, want) {
		t.Errorf("Orphans() = %v, want %v", got, want)
	}
	a.SetPools([]Pool{{Name: "p", Ranges: ranges(t, "198.51.100.0/28")}})
	if got, want := a.Orphans(), []string{"ns/a", "ns/b", "ns/d"}; !slices.Equal(got, want) {
		t.Errorf("after shrinking the pool Orphans() = %v, want %v", got, want)
	}
	if got := a.Holders(addr("198.51.100.33")); !slices.Equal(got, []string{"ns/b"}) {
		t.Errorf("orphaned assignment was dropped: Holders() = %v", got)
	}
	if got := a.PoolOf(addr("198.51.100.33")); got != "" {
		t.Errorf("PoolOf(orphan) = %q, want none", got)
	}
	a.Release("ns/a")
	if got, want := a.Orphans(), []string{"ns/b", "ns/d"}; !slices.Equal(got, want) {
		t.Errorf("after release Orphans() = %v, want %v", got, want)
	}
}

func TestSetPoolsKeepsAssignmentsAndRecomputes(t *testing.T) {
	a := New()
	a.SetPools([]Pool{{Name: "p", Ranges: ranges(t, "198.51.100.0/29")}})
	for i := range 3 {
		if _, _, err := a.Allocate(svc("ns/"+string(rune('a'+i))), IPv4, []string{"p"}); err != nil {
			t.Fatal(err)
		}
	}
	a.Release("ns/a") // .0 goes back below the cursor
	// Unchanged definition: state kept, .0 still the lowest free.
	a.SetPools([]Pool{{Name: "p", Ranges: ranges(t, "198.51.100.0/29")}})
	if ip, _, _ := a.Allocate(svc("ns/x"), IPv4, []string{"p"}); ip != addr("198.51.100.0") {
		t.Errorf("after unchanged SetPools Allocate() = %s, want 198.51.100.0", ip)
	}
	a.Release("ns/x")
	// Changed definition: rebuilt, held addresses are still skipped.
	a.SetPools([]Pool{{Name: "p", Ranges: ranges(t, "198.51.100.1/32", "198.51.100.2/31")}})
	if ip, _, _ := a.Allocate(svc("ns/y"), IPv4, []string{"p"}); ip != addr("198.51.100.3") {
		t.Errorf("after changed SetPools Allocate() = %s, want 198.51.100.3", ip)
	}
	st, _ := a.Stats("p")
	if st.AssignedIPv4 != 3 || st.AvailableIPv4 != 0 {
		t.Errorf("Stats() = %+v, want 3 assigned, 0 available", st)
	}
}

func TestPoolOf(t *testing.T) {
	pools := []Pool{
		{Name: "b", Ranges: ranges(t, "198.51.100.0/24")},
		{Name: "a", Ranges: ranges(t, "198.51.100.0/25")},
		{Name: "c", Ranges: ranges(t, "198.51.100.0/26")},
	}
	a := setUp(t, pools, nil)
	ip, pool, err := a.Allocate(svc("ns/x"), IPv4, []string{"c"})
	if err != nil || pool != "c" {
		t.Fatalf("Allocate() = %s from %q, %v", ip, pool, err)
	}
	if err := a.Assign(svc("ns/y"), addr("198.51.100.100"), false); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ip   string
		want string
	}{
		{ip.String(), "c"},             // allocated from c
		{"198.51.100.100", "a"},        // assigned: first pool by name
		{"198.51.100.200", "b"},        // free, only b
		{"192.0.2.1", ""},              // no pool
		{"::ffff:198.51.100.200", "b"}, // mapped form of the same
	}
	for _, tt := range tests {
		if got := a.PoolOf(addr(tt.ip)); got != tt.want {
			t.Errorf("PoolOf(%s) = %q, want %q", tt.ip, got, tt.want)
		}
	}
	// When c no longer contains the address, the first pool by name does.
	a.SetPools(pools[:2])
	if got := a.PoolOf(ip); got != "a" {
		t.Errorf("PoolOf(%s) after c was deleted = %q, want a", ip, got)
	}
}

func TestStats(t *testing.T) {
	tests := []struct {
		name  string
		pools []Pool
		held  []held
		pool  string
		want  Stats
	}{
		{
			name:  "empty /24",
			pools: []Pool{{Name: "p", Ranges: ranges(t, "198.51.100.0/24")}},
			pool:  "p", want: Stats{AvailableIPv4: 256},
		},
		{
			name:  "avoid buggy IPs",
			pools: []Pool{{Name: "p", Ranges: ranges(t, "198.51.100.0/23"), AvoidBuggyIPs: true}},
			pool:  "p", want: Stats{AvailableIPv4: 512 - 4},
		},
		{
			name:  "held buggy address counts as assigned, not twice against available",
			pools: []Pool{{Name: "p", Ranges: ranges(t, "198.51.100.0/24"), AvoidBuggyIPs: true}},
			held:  []held{{svc("ns/a"), "198.51.100.0"}, {svc("ns/b"), "198.51.100.7"}},
			pool:  "p", want: Stats{AssignedIPv4: 2, AvailableIPv4: 254 - 1},
		},
		{
			name:  "shared address counts once",
			pools: []Pool{{Name: "p", Ranges: ranges(t, "198.51.100.0/28")}},
			held: []held{
				{shared("ns/a", "k", true, "", tcp80), "198.51.100.1"},
				{shared("ns/b", "k", true, "", tcp443), "198.51.100.1"},
			},
			pool: "p", want: Stats{AssignedIPv4: 1, AvailableIPv4: 15},
		},
		{
			name: "overlapping pools both count",
			pools: []Pool{
				{Name: "p", Ranges: ranges(t, "198.51.100.0/28")},
				{Name: "q", Ranges: ranges(t, "198.51.100.0/29")},
			},
			held: []held{{svc("ns/a"), "198.51.100.1"}, {svc("ns/b"), "198.51.100.9"}},
			pool: "q", want: Stats{AssignedIPv4: 1, AvailableIPv4: 7},
		},
		{
			name:  "overlapping ranges within a pool count once",
			pools: []Pool{{Name: "p", Ranges: ranges(t, "198.51.100.0/28", "198.51.100.8-198.51.100.20")}},
			held:  []held{{svc("ns/a"), "198.51.100.9"}},
			pool:  "p", want: Stats{AssignedIPv4: 1, AvailableIPv4: 20},
		},
		{
			name:  "/64 saturates",
			pools: []Pool{{Name: "p", Ranges: ranges(t, "2001:db8::/64", "198.51.100.0/30")}},
			held:  []held{{svc("ns/a"), "2001:db8::1"}},
			pool:  "p", want: Stats{AvailableIPv4: 4, AssignedIPv6: 1, AvailableIPv6: math.MaxInt64},
		},
		{
			name:  "2^63+1 addresses minus one held is still saturated",
			pools: []Pool{{Name: "p", Ranges: ranges(t, "2001:db8::-2001:db8::8000:0:0:0")}},
			held:  []held{{svc("ns/a"), "2001:db8::1"}},
			pool:  "p", want: Stats{AssignedIPv6: 1, AvailableIPv6: math.MaxInt64},
		},
		{
			name:  "2^63 addresses minus two held is exact",
			pools: []Pool{{Name: "p", Ranges: ranges(t, "2001:db8::-2001:db8::7fff:ffff:ffff:ffff")}},
			held:  []held{{svc("ns/a"), "2001:db8::1"}, {svc("ns/b"), "2001:db8::2"}},
			pool:  "p", want: Stats{AssignedIPv6: 2, AvailableIPv6: math.MaxInt64 - 1},
		},
		{
			name:  "whole IPv6 space",
			pools: []Pool{{Name: "p", Ranges: ranges(t, "::/0")}},
			pool:  "p", want: Stats{AvailableIPv6: math.MaxInt64},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := setUp(t, tt.pools, tt.held)
			got, ok := a.Stats(tt.pool)
			if !ok {
				t.Fatalf("Stats(%q) found no pool", tt.pool)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Stats(%q) (-want +got):\n%s", tt.pool, diff)
			}
		})
	}
	if _, ok := New().Stats("nope"); ok {
		t.Error("Stats of an unknown pool reported ok")
	}
}

func TestStatsFollowAllocateAndRelease(t *testing.T) {
	a := setUp(t, []Pool{{Name: "p", Ranges: ranges(t, "198.51.100.0/30")}}, nil)
	for _, key := range []string{"ns/a", "ns/b"} {
		if _, _, err := a.Allocate(svc(key), IPv4, []string{"p"}); err != nil {
			t.Fatal(err)
		}
	}
	if st, _ := a.Stats("p"); st != (Stats{AssignedIPv4: 2, AvailableIPv4: 2}) {
		t.Errorf("Stats() = %+v after two allocations", st)
	}
	a.Release("ns/a")
	if st, _ := a.Stats("p"); st != (Stats{AssignedIPv4: 1, AvailableIPv4: 3}) {
		t.Errorf("Stats() = %+v after a release", st)
	}
}

func TestFamilyOf(t *testing.T) {
	tests := []struct {
		ip   netip.Addr
		want Family
	}{
		{addr("198.51.100.1"), IPv4},
		{addr("::ffff:198.51.100.1"), IPv4},
		{addr("2001:db8::1"), IPv6},
		{netip.Addr{}, 0},
	}
	for _, tt := range tests {
		if got := FamilyOf(tt.ip); got != tt.want {
			t.Errorf("FamilyOf(%v) = %v, want %v", tt.ip, got, tt.want)
		}
	}
}

func TestRangeSizeAndBuggyCount(t *testing.T) {
	tests := []struct {
		rng       string
		size      uint64
		buggy     uint64
		checkBugs bool
	}{
		{rng: "198.51.100.0/24", size: 256, buggy: 2, checkBugs: true},
		{rng: "198.51.100.1-198.51.100.254", size: 254, buggy: 0, checkBugs: true},
		{rng: "198.51.99.255-198.51.100.0", size: 2, buggy: 2, checkBugs: true},
		{rng: "0.0.0.0/0", size: 1 << 32, buggy: 1 << 25, checkBugs: true},
		{rng: "2001:db8::/64", size: math.MaxUint64},
		{rng: "2001:db8::ffff:ffff:ffff:ffff-2001:db8:0:1::", size: 2},
		{rng: "2001:db8::/65", size: 1 << 63},
	}
	for _, tt := range tests {
		r := ranges(t, tt.rng)[0]
		if got := rangeSize(r); got != tt.size {
			t.Errorf("rangeSize(%s) = %d, want %d", tt.rng, got, tt.size)
		}
		if tt.checkBugs {
			if got := buggyCount(r); got != tt.buggy {
				t.Errorf("buggyCount(%s) = %d, want %d", tt.rng, got, tt.buggy)
			}
		}
	}
}

func TestConflictErrorMessage(t *testing.T) {
	err := error(&ConflictError{IP: addr("198.51.100.1"), Holder: "ns/x", Reason: "held without a sharing key"})
	want := "address 198.51.100.1 is held by ns/x and cannot be shared: held without a sharing key"
	if err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
}

func TestInvalidPoolRangesAreIgnored(t *testing.T) {
	a := New()
	a.SetPools([]Pool{{Name: "p", Ranges: []netipx.IPRange{{}, netipx.IPRangeFrom(addr("198.51.100.9"), addr("198.51.100.1")), ranges(t, "198.51.100.5/32")[0]}}})
	ip, _, err := a.Allocate(svc("ns/a"), IPv4, []string{"p"})
	if err != nil || ip != addr("198.51.100.5") {
		t.Errorf("Allocate() = %v, %v; want 198.51.100.5", ip, err)
	}
}

// Sharing prefers the earliest listed pool containing the address, even when
// the address was allocated from a pool listed later (found by the fuzzer).
func TestSharingOrdersByFirstListedPoolContainingTheAddress(t *testing.T) {
	a := setUp(t, []Pool{
		{Name: "wide", Ranges: ranges(t, "198.51.100.0/28")},
		{Name: "narrow", Ranges: ranges(t, "198.51.100.1-198.51.100.3")},
	}, []held{{shared("ns/y", "k", true, "", tcp80), "198.51.100.9"}})
	if ip, pool, err := a.Allocate(shared("ns/x", "k", true, "", udp80), IPv4, []string{"narrow"}); err != nil || ip != addr("198.51.100.1") || pool != "narrow" {
		t.Fatalf("setup Allocate() = %s from %q, %v", ip, pool, err)
	}
	ip, pool, err := a.Allocate(shared("ns/z", "k", true, "", tcp443), IPv4, []string{"wide", "narrow"})
	if err != nil || ip != addr("198.51.100.1") || pool != "narrow" {
		t.Errorf("Allocate() = %s from %q, %v; want 198.51.100.1, reported from narrow, where it was allocated", ip, pool, err)
	}
}

// TestSharingAcrossNamespaces: a sharing key is no secret, so Services of
// two namespaces share only when both allow the other's namespace.
func TestSharingAcrossNamespaces(t *testing.T) {
	allow := func(s Service, namespaces ...string) Service { s.SharingNamespaces = namespaces; return s }
	tests := []struct {
		name      string
		holder    Service
		requester Service
		// wantErr is the ConflictError's reason, "" when they share.
		wantErr string
	}{{
		name:      "same namespace, same key: shared",
		holder:    shared("team-a/web", "k", true, "", tcp80),
		requester: shared("team-a/dns", "k", true, "", tcp443),
	}, {
		name:      "another namespace knowing the key: refused",
		holder:    shared("team-a/web", "k", true, "", tcp80),
		requester: shared("team-b/steal", "k", true, "", tcp443),
		wantErr:   "the holder is in namespace team-a and does not allow sharing with namespace team-b",
	}, {
		name:      "only the requester allows it: refused",
		holder:    shared("team-a/web", "k", true, "", tcp80),
		requester: allow(shared("team-b/steal", "k", true, "", tcp443), "*"),
		wantErr:   "the holder is in namespace team-a and does not allow sharing with namespace team-b",
	}, {
		name:      "only the holder allows it: refused",
		holder:    allow(shared("team-a/web", "k", true, "", tcp80), "team-b"),
		requester: shared("team-b/dns", "k", true, "", tcp443),
		wantErr:   "the holder is in namespace team-a, which the requesting service does not allow sharing with",
	}, {
		name:      "the holder allows a third namespace: refused",
		holder:    allow(shared("team-a/web", "k", true, "", tcp80), "team-c"),
		requester: allow(shared("team-b/dns", "k", true, "", tcp443), "team-a"),
		wantErr:   "the holder is in namespace team-a and does not allow sharing with namespace team-b",
	}, {
		name:      "both name each other: shared",
		holder:    allow(shared("team-a/web", "k", true, "", tcp80), "team-b"),
		requester: allow(shared("team-b/dns", "k", true, "", tcp443), "team-a"),
	}, {
		name:      "both allow any namespace: shared",
		holder:    allow(shared("team-a/web", "k", true, "", tcp80), "*"),
		requester: allow(shared("team-b/dns", "k", true, "", tcp443), "*"),
	}, {
		name:      "both allow, still a different key: refused",
		holder:    allow(shared("team-a/web", "k", true, "", tcp80), "*"),
		requester: allow(shared("team-b/dns", "other", true, "", tcp443), "*"),
		wantErr:   `sharing key "other" differs from the holder's "k"`,
	}, {
		name:      "Local traffic, same selector, same namespace: shared",
		holder:    shared("team-a/web", "k", false, "app=x", tcp80),
		requester: shared("team-a/dns", "k", false, "app=x", tcp443),
	}, {
		// Different pods in two namespaces: the announcers hold endpoints
		// of both.
		name:      "Local traffic, other namespace, both allow it: shared",
		holder:    allow(shared("team-a/web", "k", false, "app=x", tcp80), "*"),
		requester: allow(shared("team-b/dns", "k", false, "app=x", tcp443), "*"),
	}, {
		name:      "Local traffic, other namespace, the holder does not allow it: refused",
		holder:    shared("team-a/web", "k", false, "app=x", tcp80),
		requester: allow(shared("team-b/dns", "k", false, "app=x", tcp443), "*"),
		wantErr:   "the holder is in namespace team-a and does not allow sharing with namespace team-b",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := setUp(t, []Pool{{Name: "p", Ranges: ranges(t, "198.51.100.0/30")}}, []held{{tt.holder, "198.51.100.0"}})
			err := a.Assign(tt.requester, addr("198.51.100.0"), false)
			got := ""
			var conflict *ConflictError
			if errors.As(err, &conflict) {
				got = conflict.Reason
			} else if err != nil {
				t.Fatalf("Assign: %v", err)
			}
			if diff := cmp.Diff(tt.wantErr, got); diff != "" {
				t.Errorf("conflict reason (-want +got):\n%s", diff)
			}
			// Allocate shares by key only where Assign would.
			b := setUp(t, []Pool{{Name: "p", Ranges: ranges(t, "198.51.100.0/30")}}, []held{{tt.holder, "198.51.100.0"}})
			ip, _, err := b.Allocate(tt.requester, IPv4, []string{"p"})
			if err != nil {
				t.Fatalf("Allocate: %v", err)
			}
			if diff := cmp.Diff(tt.wantErr == "", ip == addr("198.51.100.0")); diff != "" {
				t.Errorf("Allocate gave %s; shared (-want +got):\n%s", ip, diff)
			}
		})
	}
}

// TestUnreadableHolderKeepsItsPartners: a Service whose annotations
// cannot be read at start-up keeps its address and its partners; nobody
// new joins it.
func TestUnreadableHolderKeepsItsPartners(t *testing.T) {
	broken := Service{Key: "ns/broken", Unreadable: true}
	partner := shared("ns/partner", "k", true, "", tcp443)
	a := setUp(t, []Pool{{Name: "p", Ranges: ranges(t, "198.51.100.0/30")}}, []held{
		{partner, "198.51.100.0"},
		{broken, "198.51.100.0"},
	})
	if diff := cmp.Diff([]string{"ns/broken", "ns/partner"}, a.Holders(addr("198.51.100.0"))); diff != "" {
		t.Fatalf("holders after loading (-want +got):\n%s", diff)
	}
	// The partner's next reconcile keeps the address.
	ip, _, err := a.Allocate(partner, IPv4, []string{"p"})
	if err != nil || ip != addr("198.51.100.0") {
		t.Errorf("partner: Allocate() = %v, %v; want 198.51.100.0 kept", ip, err)
	}
	// A newcomer with the key does not join a holder whose rules are unknown.
	ip, _, err = a.Allocate(shared("ns/new", "k", true, "", Port{Port: 8080, Protocol: "TCP"}), IPv4, []string{"p"})
	if err != nil || ip != addr("198.51.100.1") {
		t.Errorf("newcomer: Allocate() = %v, %v; want 198.51.100.1", ip, err)
	}
	// The partner leaving does not free the address: the broken one holds it.
	a.Release("ns/partner")
	ip, _, err = a.Allocate(svc("ns/third"), IPv4, []string{"p"})
	if err != nil || ip != addr("198.51.100.2") {
		t.Errorf("third: Allocate() = %v, %v; want 198.51.100.2, the shared address still held", ip, err)
	}
}
