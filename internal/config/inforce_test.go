package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
)

func TestResolvePools(t *testing.T) {
	// withStatus records addresses in force in a pool's status, as the
	// controller does.
	withStatus := func(p *barelbv1beta1.IPAddressPool, addresses ...string) *barelbv1beta1.IPAddressPool {
		p.Status.AddressesInForce = addresses
		return p
	}
	type result struct {
		InForce []string // addresses of the definition in force; nil for none
		Problem string   // a fragment of the problem; "" for none
	}
	tests := []struct {
		name     string
		objs     []*barelbv1beta1.IPAddressPool
		previous map[string][]string // addresses in force before
		want     map[string]result
	}{{
		name: "valid pools are used as written",
		objs: []*barelbv1beta1.IPAddressPool{apiPool("a", nil, "198.51.100.0/29"), apiPool("b", nil, "198.51.100.8/29")},
		want: map[string]result{"a": {InForce: []string{"198.51.100.0/29"}}, "b": {InForce: []string{"198.51.100.8/29"}}},
	}, {
		name:     "an edit that makes a pool overlap another is refused",
		objs:     []*barelbv1beta1.IPAddressPool{apiPool("a", nil, "198.51.100.8/30"), apiPool("b", nil, "198.51.100.8/29")},
		previous: map[string][]string{"a": {"198.51.100.0/29"}, "b": {"198.51.100.8/29"}},
		want: map[string]result{
			"a": {InForce: []string{"198.51.100.0/29"}, Problem: `addresses overlap IPAddressPool "b" on 198.51.100.8/30; an address may belong to one pool only; the edit is refused and the last valid addresses (198.51.100.0/29) stay in force`},
			"b": {InForce: []string{"198.51.100.8/29"}},
		},
	}, {
		name:     "after a restart the status still refuses it",
		objs:     []*barelbv1beta1.IPAddressPool{withStatus(apiPool("a", nil, "198.51.100.8/30"), "198.51.100.0/29"), withStatus(apiPool("b", nil, "198.51.100.8/29"), "198.51.100.8/29")},
		previous: nil,
		want: map[string]result{
			"a": {InForce: []string{"198.51.100.0/29"}, Problem: `overlap IPAddressPool "b"`},
			"b": {InForce: []string{"198.51.100.8/29"}},
		},
	}, {
		name:     "overlapping blocks within a pool keep the last valid definition",
		objs:     []*barelbv1beta1.IPAddressPool{apiPool("a", nil, "198.51.100.0/29", "198.51.100.4/30")},
		previous: map[string][]string{"a": {"198.51.100.0/28"}},
		want:     map[string]result{"a": {InForce: []string{"198.51.100.0/28"}, Problem: "the last valid addresses (198.51.100.0/28) stay in force"}},
	}, {
		name: "an invalid pool never seen valid is in force nowhere",
		objs: []*barelbv1beta1.IPAddressPool{apiPool("a", nil, "198.51.100.0/29", "198.51.100.4/30")},
		want: map[string]result{"a": {Problem: "knows no valid definition of this pool"}},
	}, {
		name:     "an overlap that predates the edit does not refuse it",
		objs:     []*barelbv1beta1.IPAddressPool{apiPool("a", nil, "198.51.100.0/28"), apiPool("b", nil, "198.51.100.8/29")},
		previous: map[string][]string{"a": {"198.51.100.0/29", "198.51.100.8/31"}, "b": {"198.51.100.8/29"}},
		want:     map[string]result{"a": {InForce: []string{"198.51.100.0/28"}}, "b": {InForce: []string{"198.51.100.8/29"}}},
	}, {
		name: "a pool first seen overlapping is used (the allocator never gives an address twice)",
		objs: []*barelbv1beta1.IPAddressPool{apiPool("a", nil, "198.51.100.0/29"), apiPool("b", nil, "198.51.100.4/30")},
		want: map[string]result{"a": {InForce: []string{"198.51.100.0/29"}}, "b": {InForce: []string{"198.51.100.4/30"}}},
	}, {
		name:     "two edits that would overlap each other: the second by name is refused",
		objs:     []*barelbv1beta1.IPAddressPool{apiPool("a", nil, "198.51.100.0/28"), apiPool("b", nil, "198.51.100.8/29")},
		previous: map[string][]string{"a": {"198.51.100.0/29"}, "b": {"198.51.100.16/28"}},
		want: map[string]result{
			"a": {InForce: []string{"198.51.100.0/28"}},
			"b": {InForce: []string{"198.51.100.16/28"}, Problem: `overlap IPAddressPool "a" on 198.51.100.8/29`},
		},
	}, {
		// Judged in name order, a is judged first against b's last valid
		// definition; the order must not decide, or the next resolution
		// would lift a's refusal without any spec changing.
		name:     "an edit that overlaps only where another pool's edit moves away is applied",
		objs:     []*barelbv1beta1.IPAddressPool{apiPool("a", nil, "198.51.100.8/29"), apiPool("b", nil, "198.51.100.16/29")},
		previous: map[string][]string{"a": {"198.51.100.0/29"}, "b": {"198.51.100.8/29"}},
		want:     map[string]result{"a": {InForce: []string{"198.51.100.8/29"}}, "b": {InForce: []string{"198.51.100.16/29"}}},
	}, {
		name:     "a chain of such edits is applied whole",
		objs:     []*barelbv1beta1.IPAddressPool{apiPool("a", nil, "198.51.100.8/29"), apiPool("b", nil, "198.51.100.16/29"), apiPool("c", nil, "198.51.100.24/29")},
		previous: map[string][]string{"a": {"198.51.100.0/29"}, "b": {"198.51.100.8/29"}, "c": {"198.51.100.16/29"}},
		want: map[string]result{
			"a": {InForce: []string{"198.51.100.8/29"}}, "b": {InForce: []string{"198.51.100.16/29"}}, "c": {InForce: []string{"198.51.100.24/29"}},
		},
	}, {
		name:     "a fixed edit is applied",
		objs:     []*barelbv1beta1.IPAddressPool{apiPool("a", nil, "198.51.100.0/28")},
		previous: map[string][]string{"a": {"198.51.100.0/29"}},
		want:     map[string]result{"a": {InForce: []string{"198.51.100.0/28"}}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			previous := map[string]*Pool{}
			for name, addrs := range tt.previous {
				previous[name] = mustPool(t, apiPool(name, nil, addrs...))
			}
			got := map[string]result{}
			for _, r := range ResolvePools(tt.objs, previous) {
				var res result
				if r.InForce != nil {
					res.InForce = r.InForce.Addresses
				}
				res.Problem = r.Problem
				if want := tt.want[r.Name].Problem; want != "" && strings.Contains(r.Problem, want) {
					res.Problem = want // compare a fragment
				}
				got[r.Name] = res
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ResolvePools (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPoolInForce(t *testing.T) {
	refused := func(generation, observed int64, inForce ...string) *barelbv1beta1.IPAddressPool {
		p := apiPool("a", nil, "198.51.100.8/30")
		p.Generation = generation
		p.Status.AddressesInForce = inForce
		p.Status.Conditions = []metav1.Condition{{Type: PoolConditionValid, Status: metav1.ConditionFalse, Reason: "Invalid", Message: "overlap", ObservedGeneration: observed}}
		return p
	}
	tests := []struct {
		name    string
		obj     *barelbv1beta1.IPAddressPool
		want    []string
		wantErr string
	}{
		{name: "no condition yet: the spec", obj: apiPool("a", nil, "198.51.100.8/30"), want: []string{"198.51.100.8/30"}},
		{name: "refused: the addresses in force", obj: refused(2, 2, "198.51.100.0/29"), want: []string{"198.51.100.0/29"}},
		{name: "refused an older generation: the new spec", obj: refused(3, 2, "198.51.100.0/29"), want: []string{"198.51.100.8/30"}},
		{name: "refused, nothing in force", obj: refused(2, 2), wantErr: "knows no valid definition"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := PoolInForce(tt.obj)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, p.Addresses); diff != "" {
				t.Errorf("addresses in force (-want +got):\n%s", diff)
			}
		})
	}
}
