package config

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
)

func apiPool(name string, mutate func(*barelbv1beta1.IPAddressPoolSpec), addresses ...string) *barelbv1beta1.IPAddressPool {
	p := &barelbv1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, a := range addresses {
		p.Spec.Addresses = append(p.Spec.Addresses, barelbv1beta1.AddressRange(a))
	}
	if mutate != nil {
		mutate(&p.Spec)
	}
	return p
}

func mustPool(t *testing.T, p *barelbv1beta1.IPAddressPool) *Pool {
	t.Helper()
	pool, err := PoolFromAPI(p)
	if err != nil {
		t.Fatalf("PoolFromAPI(%s): %v", p.Name, err)
	}
	return pool
}

func TestPoolFromAPI(t *testing.T) {
	no := false
	p := mustPool(t, apiPool("a", func(s *barelbv1beta1.IPAddressPoolSpec) {
		s.AutoAssign = &no
		s.ServiceAllocation = &barelbv1beta1.ServiceAllocation{Priority: 5, Namespaces: []string{"shop"}}
	}, "198.51.100.0/30", "2001:db8::1-2001:db8::2"))
	if p.AutoAssign || p.Priority != 5 || !p.Namespaces["shop"] || len(p.Ranges) != 2 {
		t.Errorf("unexpected pool %+v", p)
	}
	if mustPool(t, apiPool("b", nil, "198.51.100.0/30")).AutoAssign != true {
		t.Error("autoAssign must default to true")
	}
	_, err := PoolFromAPI(apiPool("c", nil, "198.51.100.0/30", "198.51.100.2-198.51.100.9"))
	if err == nil || !strings.Contains(err.Error(), "overlaps") {
		t.Errorf("overlapping blocks within a pool: got %v", err)
	}
}

func TestPoolAdmits(t *testing.T) {
	sel := func(key, value string) barelbv1beta1.Selector {
		return barelbv1beta1.Selector{MatchLabels: map[string]barelbv1beta1.LabelValue{key: barelbv1beta1.LabelValue(value)}}
	}
	restricted := mustPool(t, apiPool("r", func(s *barelbv1beta1.IPAddressPoolSpec) {
		s.ServiceAllocation = &barelbv1beta1.ServiceAllocation{
			Namespaces:         []string{"payments"},
			NamespaceSelectors: []barelbv1beta1.Selector{sel("team", "payments")},
			ServiceSelectors:   []barelbv1beta1.Selector{sel("exposure", "public")},
		}
	}, "198.51.100.0/30"))
	open := mustPool(t, apiPool("o", nil, "198.51.100.0/30"))
	public := labels.Set{"exposure": "public"}
	tests := []struct {
		name      string
		pool      *Pool
		ns        string
		nsLabels  labels.Set
		svcLabels labels.Set
		want      bool
	}{
		{"open pool admits all", open, "any", nil, nil, true},
		{"listed namespace and matching service", restricted, "payments", nil, public, true},
		{"namespace by label", restricted, "billing", labels.Set{"team": "payments"}, public, true},
		{"other namespace", restricted, "shop", labels.Set{"team": "shop"}, public, false},
		{"service without the label", restricted, "payments", nil, labels.Set{"exposure": "internal"}, false},
	}
	for _, tc := range tests {
		if got := tc.pool.Admits(tc.ns, tc.nsLabels, tc.svcLabels); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestSortPoolsAndCandidates(t *testing.T) {
	withPriority := func(n int) func(*barelbv1beta1.IPAddressPoolSpec) {
		return func(s *barelbv1beta1.IPAddressPoolSpec) {
			s.ServiceAllocation = &barelbv1beta1.ServiceAllocation{Priority: n}
		}
	}
	no := false
	pools := []*Pool{
		mustPool(t, apiPool("zeta", nil, "198.51.100.0/30")),
		mustPool(t, apiPool("alpha", nil, "198.51.100.4/30")),
		mustPool(t, apiPool("p20", withPriority(20), "198.51.100.8/30")),
		mustPool(t, apiPool("p10b", withPriority(10), "198.51.100.12/30")),
		mustPool(t, apiPool("p10a", withPriority(10), "198.51.100.16/30")),
		mustPool(t, apiPool("manual", func(s *barelbv1beta1.IPAddressPoolSpec) { s.AutoAssign = &no }, "198.51.100.20/30")),
	}
	SortPools(pools)
	var names []string
	for _, p := range AutoAssignCandidates(pools, "ns", nil, nil) {
		names = append(names, p.Name)
	}
	want := []string{"p10a", "p10b", "p20", "alpha", "zeta"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

func TestOverlaps(t *testing.T) {
	pools := []*Pool{
		mustPool(t, apiPool("a", nil, "198.51.100.0/24")),
		mustPool(t, apiPool("b", nil, "198.51.100.128-198.51.100.130")),
		mustPool(t, apiPool("c", nil, "2001:db8::/120")),
	}
	got := Overlaps(pools)
	want := map[string][]string{"a": {"b"}, "b": {"a"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Overlaps (-want +got):\n%s", diff)
	}
}

func TestAnnouncedAddresses(t *testing.T) {
	pool := func(addresses ...string) *Pool { return mustPool(t, apiPool("lan", nil, addresses...)) }
	a := netip.MustParseAddr
	tests := []struct {
		name  string
		pool  *Pool
		addrs []netip.Addr
		want  []netip.Addr
	}{{
		name:  "addresses of the pool are announced",
		pool:  pool("198.51.100.0/29", "2001:db8::/120"),
		addrs: []netip.Addr{a("198.51.100.3"), a("2001:db8::3")},
		want:  []netip.Addr{a("198.51.100.3"), a("2001:db8::3")},
	}, {
		// A user or another implementation patched the status to the
		// node's address: no speaker may answer for it.
		name:  "an address outside the named pool is not",
		pool:  pool("198.51.100.0/29"),
		addrs: []netip.Addr{a("192.0.2.10")},
		want:  []netip.Addr{},
	}, {
		name:  "only the foreign address of several is dropped",
		pool:  pool("198.51.100.0/29"),
		addrs: []netip.Addr{a("192.0.2.1"), a("198.51.100.1")},
		want:  []netip.Addr{a("198.51.100.1")},
	}, {
		name:  "an IPv4-mapped address counts as IPv4",
		pool:  pool("198.51.100.0/29"),
		addrs: []netip.Addr{a("::ffff:198.51.100.2")},
		want:  []netip.Addr{a("::ffff:198.51.100.2")},
	}, {
		name:  "no valid pool, nothing announced",
		pool:  nil,
		addrs: []netip.Addr{a("198.51.100.1")},
		want:  nil,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AnnouncedAddresses(tt.pool, tt.addrs)
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
				t.Errorf("AnnouncedAddresses (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("all inside: the same slice, no copy", func(t *testing.T) {
		addrs := []netip.Addr{a("198.51.100.1")}
		if got := AnnouncedAddresses(pool("198.51.100.0/29"), addrs); &got[0] != &addrs[0] {
			t.Error("a copy was made although every address is inside")
		}
	})
}
