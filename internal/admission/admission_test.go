package admission

import (
	"net/netip"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
)

func pool(t *testing.T, name string, addresses ...string) *config.Pool {
	t.Helper()
	obj := &barelbv1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "barelb-system"}}
	for _, a := range addresses {
		obj.Spec.Addresses = append(obj.Spec.Addresses, barelbv1beta1.AddressRange(a))
	}
	p, err := config.PoolFromAPI(obj)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func peer(t *testing.T, name, address string, port uint16, selectors ...barelbv1beta1.Selector) *config.BGPPeer {
	t.Helper()
	obj := &barelbv1beta1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "barelb-system"}}
	obj.Spec = barelbv1beta1.BGPPeerSpec{MyASN: 64512, PeerASN: 64513, PeerPort: port, NodeSelectors: selectors}
	if strings.HasPrefix(address, "if:") {
		obj.Spec.Interface = strings.TrimPrefix(address, "if:")
	} else {
		obj.Spec.PeerAddress = address
	}
	p, err := config.BGPPeerFromAPI(obj, config.BGPPeerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func labelsSel(kv ...string) barelbv1beta1.Selector {
	s := barelbv1beta1.Selector{MatchLabels: map[string]barelbv1beta1.LabelValue{}}
	for i := 0; i < len(kv); i += 2 {
		s.MatchLabels[kv[i]] = barelbv1beta1.LabelValue(kv[i+1])
	}
	return s
}

func exprSel(key string, op metav1.LabelSelectorOperator, values ...string) barelbv1beta1.Selector {
	return barelbv1beta1.Selector{MatchExpressions: []barelbv1beta1.SelectorRequirement{{Key: key, Operator: op, Values: values}}}
}

// check compares a verdict with the substrings each denial and warning
// must contain, in order.
func check(t *testing.T, got Verdict, denials, warnings []string) {
	t.Helper()
	match := func(what string, got, want []string) {
		if len(got) != len(want) {
			t.Errorf("%s: got %d %q, want %d containing %q", what, len(got), got, len(want), want)
			return
		}
		for i := range want {
			if !strings.Contains(got[i], want[i]) {
				t.Errorf("%s[%d] = %q, want it to contain %q", what, i, got[i], want[i])
			}
		}
	}
	match("denials", got.Denials, denials)
	match("warnings", got.Warnings, warnings)
	if got.Allowed() != (len(denials) == 0) {
		t.Errorf("Allowed() = %v with denials %q", got.Allowed(), got.Denials)
	}
}

func TestCheckPool(t *testing.T) {
	svc := func(name string, ips ...string) Assignment {
		a := Assignment{Service: name}
		for _, ip := range ips {
			a.Addresses = append(a.Addresses, netip.MustParseAddr(ip))
		}
		return a
	}
	var many []Assignment
	for _, n := range []string{"a", "b", "c", "d", "e", "f", "g"} {
		many = append(many, svc("default/"+n, "198.51.100.200"))
	}
	for _, tc := range []struct {
		name              string
		pool, old         *config.Pool
		others            []*config.Pool
		assigned          []Assignment
		denials, warnings []string
	}{
		{name: "alone", pool: pool(t, "lan", "198.51.100.0/24")},
		{name: "disjoint pools", pool: pool(t, "lan", "198.51.100.0/25"),
			others: []*config.Pool{pool(t, "dmz", "198.51.100.128/25"), pool(t, "v6", "2001:db8::/120")}},
		{name: "its own old version is not another pool", pool: pool(t, "lan", "198.51.100.0/24"),
			others: []*config.Pool{pool(t, "lan", "198.51.100.0/25")}},
		{name: "overlap names the pool and the range", pool: pool(t, "lan", "198.51.100.0/24"),
			others:  []*config.Pool{pool(t, "dmz", "198.51.100.16-198.51.100.31", "203.0.113.0/24")},
			denials: []string{`IPAddressPool "dmz" on 198.51.100.16/28`}},
		{name: "a single shared address", pool: pool(t, "lan", "198.51.100.10-198.51.100.20"),
			others:  []*config.Pool{pool(t, "dmz", "198.51.100.20-198.51.100.30")},
			denials: []string{`"dmz" on 198.51.100.20;`}},
		{name: "an odd range is written as a range", pool: pool(t, "lan", "198.51.100.10-198.51.100.20"),
			others:  []*config.Pool{pool(t, "dmz", "198.51.100.0/24")},
			denials: []string{`on 198.51.100.10-198.51.100.20;`}},
		{name: "two overlaps, sorted by name", pool: pool(t, "lan", "198.51.100.0/24", "2001:db8::/64"),
			others:  []*config.Pool{pool(t, "z6", "2001:db8::1/128"), pool(t, "a4", "198.51.100.255/32")},
			denials: []string{`"a4" on 198.51.100.255`, `"z6" on 2001:db8::1`}},
		{name: "an overlap the old pool had too is a warning", pool: pool(t, "lan", "198.51.100.0/24"), old: pool(t, "lan", "198.51.100.0/25"),
			others:   []*config.Pool{pool(t, "dmz", "198.51.100.0/26"), pool(t, "new", "198.51.100.128/26")},
			denials:  []string{`"new" on 198.51.100.128/26`},
			warnings: []string{`"dmz" on 198.51.100.0/26; an address may belong to one pool only (the overlap predates this change)`}},
		{name: "assignments inside the pool", pool: pool(t, "lan", "198.51.100.0/24"),
			assigned: []Assignment{svc("default/web", "198.51.100.5"), svc("default/dual", "198.51.100.6", "2001:db8::6")},
			// 2001:db8::6 of a dual-stack Service is outside this IPv4-only pool:
			warnings: []string{"1 Service holds addresses from this pool that the new addresses do not contain; it will be moved to new addresses: default/dual (2001:db8::6)"}},
		{name: "a cut names the Services and counts them all", pool: pool(t, "lan", "198.51.100.0/25"),
			assigned: append([]Assignment{svc("default/web", "198.51.100.5")}, many...),
			warnings: []string{"7 Services hold addresses from this pool that the new addresses do not contain; they will be moved to new addresses: default/a (198.51.100.200), default/b (198.51.100.200), default/c (198.51.100.200), default/d (198.51.100.200), default/e (198.51.100.200) and 2 more"}},
		{name: "overlap and cut together", pool: pool(t, "lan", "198.51.100.0/25"),
			others:   []*config.Pool{pool(t, "dmz", "198.51.100.0/24")},
			assigned: []Assignment{svc("default/web", "198.51.100.130")},
			denials:  []string{`"dmz" on 198.51.100.0/25`}, warnings: []string{"default/web (198.51.100.130)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check(t, CheckPool(tc.pool, tc.old, tc.others, tc.assigned), tc.denials, tc.warnings)
		})
	}
}

func TestCheckAdvertisement(t *testing.T) {
	exist := map[string]bool{"lan": true, "dmz": true}
	peers := map[string]bool{"tor1": true}
	for _, tc := range []struct {
		name         string
		pools, peers []string
		warnings     []string
	}{
		{name: "every pool and peer exists", pools: []string{"lan", "dmz"}, peers: []string{"tor1"}},
		{name: "names nothing: every pool, every peer"},
		{name: "a missing pool", pools: []string{"lan", "lna"}, warnings: []string{`ipAddressPools names IPAddressPool "lna" that does not exist`}},
		{name: "missing pools, each once", pools: []string{"x", "y", "x"}, warnings: []string{`IPAddressPools "x", "y" that do not exist`}},
		{name: "a missing peer", peers: []string{"tor1", "tor2"}, warnings: []string{`peers names BGPPeer "tor2" that does not exist`}},
		{name: "both", pools: []string{"p"}, peers: []string{"q"}, warnings: []string{`IPAddressPool "p"`, `BGPPeer "q"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check(t, CheckAdvertisement(tc.pools, tc.peers, exist, peers), nil, tc.warnings)
		})
	}
}

func TestCheckBGPPeer(t *testing.T) {
	rackA, rackB := labelsSel("rack", "a"), labelsSel("rack", "b")
	withSecret := peer(t, "tor1", "198.51.100.1", 0)
	withSecret.PasswordSecret = &config.SecretRef{Namespace: "barelb-system", Name: "tor1-md5"}
	for _, tc := range []struct {
		name              string
		peer, old         *config.BGPPeer
		others            []*config.BGPPeer
		secretExists      bool
		denials, warnings []string
	}{
		{name: "alone", peer: peer(t, "tor1", "198.51.100.1", 0)},
		{name: "other addresses", peer: peer(t, "tor1", "198.51.100.1", 0),
			others: []*config.BGPPeer{peer(t, "tor2", "198.51.100.2", 0), peer(t, "v6", "2001:db8::1", 0), peer(t, "unnumbered", "if:eth1", 0)}},
		{name: "same address, other port", peer: peer(t, "tor1", "198.51.100.1", 0),
			others: []*config.BGPPeer{peer(t, "tor1-alt", "198.51.100.1", 1179)}},
		{name: "its own old version", peer: peer(t, "tor1", "198.51.100.1", 0),
			others: []*config.BGPPeer{peer(t, "tor1", "198.51.100.1", 0)}},
		{name: "same address, both every node", peer: peer(t, "tor1", "198.51.100.1", 0),
			others:  []*config.BGPPeer{peer(t, "dup", "198.51.100.1", 179)},
			denials: []string{`BGPPeer "dup" is also for 198.51.100.1 port 179, and both select every node`}},
		{name: "one selects every node", peer: peer(t, "tor1", "198.51.100.1", 0, rackA),
			others:  []*config.BGPPeer{peer(t, "dup", "198.51.100.1", 0)},
			denials: []string{"the other selects every node"}},
		{name: "identical selectors", peer: peer(t, "tor1", "198.51.100.1", 0, rackB, rackA),
			others:  []*config.BGPPeer{peer(t, "dup", "198.51.100.1", 0, labelsSel("rack", "a"))},
			denials: []string{`both select nodes with "rack=a"`}},
		{name: "the same unnumbered interface", peer: peer(t, "a", "if:eth1", 0),
			others:  []*config.BGPPeer{peer(t, "b", "if:eth1", 0)},
			denials: []string{"interface eth1 port 179"}},
		{name: "disjoint selectors split the nodes", peer: peer(t, "tor-a", "198.51.100.1", 0, rackA),
			others: []*config.BGPPeer{peer(t, "tor-b", "198.51.100.1", 0, rackB),
				peer(t, "not-a", "198.51.100.1", 0, exprSel("rack", metav1.LabelSelectorOpNotIn, "a")),
				peer(t, "unracked", "198.51.100.1", 0, exprSel("rack", metav1.LabelSelectorOpDoesNotExist))}},
		{name: "selectors that may meet on one node", peer: peer(t, "tor-a", "198.51.100.1", 0, rackA),
			others:   []*config.BGPPeer{peer(t, "zone1", "198.51.100.1", 0, labelsSel("zone", "1"))},
			warnings: []string{`BGPPeer "zone1" is also for 198.51.100.1 port 179, and a node labelled to match both "rack=a" and "zone=1"`}},
		{name: "a duplicate that predates the change is a warning", peer: peer(t, "tor1", "198.51.100.1", 0, rackA),
			old:      peer(t, "tor1", "198.51.100.1", 0),
			others:   []*config.BGPPeer{peer(t, "dup", "198.51.100.1", 0)},
			warnings: []string{"the other selects every node, including those this peer selects; a node opens one session per peer, so one of them is never used (the conflict predates this change)"}},
		{name: "an edit that makes a duplicate is denied", peer: peer(t, "tor1", "198.51.100.1", 0),
			old:     peer(t, "tor1", "198.51.100.2", 0),
			others:  []*config.BGPPeer{peer(t, "dup", "198.51.100.1", 0)},
			denials: []string{"both select every node"}},
		{name: "password Secret present", peer: withSecret, secretExists: true},
		{name: "password Secret missing", peer: withSecret,
			warnings: []string{`passwordSecret "tor1-md5" does not exist in namespace barelb-system`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check(t, CheckBGPPeer(tc.peer, tc.old, tc.others, tc.secretExists), tc.denials, tc.warnings)
		})
	}
}

func TestCanBothMatch(t *testing.T) {
	parse := func(s string) labels.Selector {
		t.Helper()
		sel, err := labels.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return sel
	}
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"rack=a", "rack=a", true},
		{"rack=a", "rack=b", false},
		{"rack=a", "zone=1", true},
		{"rack in (a,b)", "rack in (b,c)", true},
		{"rack in (a,b)", "rack in (c,d)", false},
		{"rack in (a,b)", "rack notin (a,b)", false},
		{"rack in (a,b)", "rack notin (a)", true},
		{"rack", "!rack", false},
		{"rack=a", "!rack", false},
		{"rack notin (a)", "!rack", true},
		{"rack!=a", "rack!=b", true},
		{"", "rack=a", true},
	} {
		if got := canBothMatch(parse(tc.a), parse(tc.b)); got != tc.want {
			t.Errorf("canBothMatch(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if got := canBothMatch(parse(tc.b), parse(tc.a)); got != tc.want {
			t.Errorf("canBothMatch(%q, %q) = %v, want %v", tc.b, tc.a, got, tc.want)
		}
	}
	if canBothMatch(labels.Nothing(), labels.Everything()) {
		t.Error("labels.Nothing() matched something")
	}
}
