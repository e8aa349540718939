package config

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
)

// Defaults of a BGPPeer's timers.
const (
	DefaultHoldTime = 90 * time.Second
	// DefaultConnectTime is short on purpose: GoBGP's own default (120 s)
	// leaves a session down for minutes after one failed attempt.
	DefaultConnectTime = 5 * time.Second
	DefaultPeerPort    = 179
)

// DynamicASN says which kind of session a peer without a configured ASN
// may open.
type DynamicASN string

// The kinds of dynamic ASN; the empty value means the ASN is configured.
const (
	DynamicASNNone     DynamicASN = ""
	DynamicASNInternal DynamicASN = "internal"
	DynamicASNExternal DynamicASN = "external"
)

// SecretRef names the Secret holding a peer's TCP MD5 password.
type SecretRef struct {
	Namespace, Name string
}

// BGPPeer is a BGPPeer, parsed and validated.
type BGPPeer struct {
	Name  string
	MyASN uint32
	// PeerASN is the ASN the peer must present; 0 when DynamicASN is set.
	PeerASN    uint32
	DynamicASN DynamicASN
	// Address is the router's address; invalid for an unnumbered peer,
	// which names Interface instead.
	Address   netip.Addr
	Interface string
	Port      uint16
	// SourceAddress and RouterID are invalid when unset.
	SourceAddress netip.Addr
	RouterID      netip.Addr
	// HoldTime is 0 (no keepalives) or at least 3 s; KeepaliveTime is
	// below it (a third by default), and 0 when HoldTime is.
	HoldTime, KeepaliveTime, ConnectTime time.Duration
	EBGPMultiHop                         bool
	// Password is the TCP MD5 password written in the object; the glue
	// reads PasswordSecret's instead when that is set.
	Password        string
	PasswordSecret  *SecretRef
	GracefulRestart bool
	DisableMP       bool
	// NodeSelectors choose the nodes that open the session; empty means
	// all.
	NodeSelectors []labels.Selector
	// BFDProfile names a BFDProfile; empty means no BFD.
	BFDProfile string
}

// BGPPeerOptions are what judging a BGPPeer needs besides the object.
type BGPPeerOptions struct {
	// BFDProfiles holds the names of the existing BFDProfiles; nil skips
	// the check that the named profile exists.
	BFDProfiles map[string]bool
}

// BGPPeerFromAPI parses a BGPPeer. It checks on its own what the API
// server's rules check (for objects that predate them) and what they
// cannot: the family of the source address, the secret's namespace, the
// BFD profile's existence.
func BGPPeerFromAPI(p *barelbv1beta1.BGPPeer, opts BGPPeerOptions) (*BGPPeer, error) {
	out, err := bgpPeerFromAPI(p, opts)
	if err != nil {
		return nil, fmt.Errorf("BGPPeer %s: %w", p.Name, err)
	}
	return out, nil
}

func bgpPeerFromAPI(p *barelbv1beta1.BGPPeer, opts BGPPeerOptions) (*BGPPeer, error) {
	s := &p.Spec
	out := &BGPPeer{
		Name:            p.Name,
		MyASN:           s.MyASN,
		PeerASN:         s.PeerASN,
		Interface:       s.Interface,
		Port:            s.PeerPort,
		EBGPMultiHop:    s.EBGPMultiHop,
		Password:        s.Password,
		GracefulRestart: s.EnableGracefulRestart,
		DisableMP:       s.DisableMP,
		BFDProfile:      s.BFDProfile,
	}
	if out.Port == 0 {
		out.Port = DefaultPeerPort
	}
	if s.MyASN == 0 {
		return nil, errors.New("myASN must be from 1 to 4294967295")
	}
	switch {
	case s.PeerASN != 0 && s.DynamicASN != "":
		return nil, errors.New("set exactly one of peerASN and dynamicASN, not both")
	case s.PeerASN == 0 && s.DynamicASN == "":
		return nil, errors.New("set exactly one of peerASN and dynamicASN")
	case s.DynamicASN != "":
		switch d := DynamicASN(s.DynamicASN); d {
		case DynamicASNInternal, DynamicASNExternal:
			out.DynamicASN = d
		default:
			return nil, fmt.Errorf("dynamicASN %q must be internal or external", s.DynamicASN)
		}
	}
	if s.EBGPMultiHop && out.IsInternal() {
		return nil, fmt.Errorf("ebgpMultiHop applies to eBGP peers only, and this peer is iBGP (myASN %d, %s)", s.MyASN, out.peerASNString())
	}

	switch {
	case s.PeerAddress != "" && s.Interface != "":
		return nil, errors.New("set exactly one of peerAddress and interface, not both")
	case s.PeerAddress == "" && s.Interface == "":
		return nil, errors.New("set exactly one of peerAddress and interface")
	case s.PeerAddress != "":
		a, err := parsePlainAddr(s.PeerAddress)
		if err != nil {
			return nil, fmt.Errorf("peerAddress: %w", err)
		}
		out.Address = a
	}
	if s.SourceAddress != "" {
		a, err := parsePlainAddr(s.SourceAddress)
		if err != nil {
			return nil, fmt.Errorf("sourceAddress: %w", err)
		}
		if out.Address.IsValid() && a.Is4() != out.Address.Is4() {
			return nil, fmt.Errorf("sourceAddress %s and peerAddress %s are of different families", a, out.Address)
		}
		out.SourceAddress = a
	}
	if s.RouterID != "" {
		a, err := parsePlainAddr(s.RouterID)
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("routerID %q must be an IPv4 address", s.RouterID)
		}
		out.RouterID = a
	}

	var err error
	if out.HoldTime, out.KeepaliveTime, out.ConnectTime, err = peerTimers(s); err != nil {
		return nil, err
	}

	if s.Password != "" && s.PasswordSecret != nil {
		return nil, errors.New("set password or passwordSecret, not both")
	}
	if ref := s.PasswordSecret; ref != nil {
		ns := ref.Namespace
		if ns == "" {
			ns = p.Namespace
		}
		if ns != p.Namespace {
			return nil, fmt.Errorf("passwordSecret %s/%s must be in the peer's own namespace %q", ns, ref.Name, p.Namespace)
		}
		out.PasswordSecret = &SecretRef{Namespace: ns, Name: ref.Name}
	}
	if s.BFDProfile != "" && opts.BFDProfiles != nil && !opts.BFDProfiles[s.BFDProfile] {
		return nil, fmt.Errorf("bfdProfile %q: no such BFDProfile", s.BFDProfile)
	}
	if out.NodeSelectors, err = parseSelectors(s.NodeSelectors); err != nil {
		return nil, fmt.Errorf("nodeSelectors%w", err)
	}
	return out, nil
}

// peerTimers checks and defaults hold, keepalive and connect times.
func peerTimers(s *barelbv1beta1.BGPPeerSpec) (hold, keepalive, connect time.Duration, err error) {
	whole := func(name string, d time.Duration) error {
		if d%time.Second != 0 {
			return fmt.Errorf("%s %s must be whole seconds", name, d)
		}
		return nil
	}
	hold = DefaultHoldTime
	if s.HoldTime != nil {
		hold = s.HoldTime.Duration
		if err := whole("holdTime", hold); err != nil {
			return 0, 0, 0, err
		}
		if hold != 0 && (hold < 3*time.Second || hold > 65535*time.Second) {
			return 0, 0, 0, fmt.Errorf("holdTime %s must be 0 or from 3s to 65535s", hold)
		}
	}
	keepalive = hold / 3
	keepalive -= keepalive % time.Second
	if s.KeepaliveTime != nil {
		keepalive = s.KeepaliveTime.Duration
		if err := whole("keepaliveTime", keepalive); err != nil {
			return 0, 0, 0, err
		}
		switch {
		case hold == 0 && keepalive != 0:
			return 0, 0, 0, fmt.Errorf("keepaliveTime %s must be 0 when holdTime is 0", keepalive)
		case hold != 0 && (keepalive < 0 || keepalive >= hold):
			return 0, 0, 0, fmt.Errorf("keepaliveTime %s must be less than holdTime %s", keepalive, hold)
		}
	}
	connect = DefaultConnectTime
	if s.ConnectTime != nil {
		connect = s.ConnectTime.Duration
		if err := whole("connectTime", connect); err != nil {
			return 0, 0, 0, err
		}
		if connect < time.Second || connect > 65535*time.Second {
			return 0, 0, 0, fmt.Errorf("connectTime %s must be from 1s to 65535s", connect)
		}
	}
	return hold, keepalive, connect, nil
}

// parsePlainAddr parses an IP address without a zone; IPv4-mapped IPv6
// addresses are taken as the IPv4 address they map.
func parsePlainAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q must not carry a zone", s)
	}
	return a.Unmap(), nil
}

// IsInternal tells whether the session is iBGP: the peer's ASN is ours,
// or the peer's ASN is learned and must be ours.
func (p *BGPPeer) IsInternal() bool {
	if p.DynamicASN != DynamicASNNone {
		return p.DynamicASN == DynamicASNInternal
	}
	return p.PeerASN == p.MyASN
}

func (p *BGPPeer) peerASNString() string {
	if p.DynamicASN != DynamicASNNone {
		return "dynamicASN " + string(p.DynamicASN)
	}
	return fmt.Sprintf("peerASN %d", p.PeerASN)
}

// SelectsNode tells whether a node with these labels opens the session.
func (p *BGPPeer) SelectsNode(nodeLabels labels.Set) bool {
	return len(p.NodeSelectors) == 0 || anyMatches(p.NodeSelectors, nodeLabels)
}

// CommunityAliases gathers the named communities of Community objects.
// A name defined with two different values, in one object or across
// several, is ambiguous: it is left out and reported, so that an
// advertisement using it is refused rather than given a guess. Every
// other name is kept.
func CommunityAliases(objs []barelbv1beta1.Community) (map[string]Community, []error) {
	type def struct {
		value Community
		where []string
	}
	defs := map[string][]def{}
	var errs []error
	for i := range objs {
		obj := &objs[i]
		for _, alias := range obj.Spec.Communities {
			if !IsCommunityName(alias.Name) {
				errs = append(errs, fmt.Errorf("community %s: %q is not a valid community name", obj.Name, alias.Name))
				continue
			}
			c, err := ParseCommunity(string(alias.Value))
			if err != nil {
				errs = append(errs, fmt.Errorf("community %s: %s: %w", obj.Name, alias.Name, err))
				continue
			}
			found := false
			for j := range defs[alias.Name] {
				if defs[alias.Name][j].value == c {
					defs[alias.Name][j].where = append(defs[alias.Name][j].where, obj.Name)
					found = true
				}
			}
			if !found {
				defs[alias.Name] = append(defs[alias.Name], def{value: c, where: []string{obj.Name}})
			}
		}
	}
	out := make(map[string]Community, len(defs))
	names := make([]string, 0, len(defs))
	for name := range defs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		ds := defs[name]
		if len(ds) == 1 {
			out[name] = ds[0].value
			continue
		}
		var parts []string
		for _, d := range ds {
			parts = append(parts, fmt.Sprintf("%s in %s", d.value, strings.Join(d.where, ", ")))
		}
		errs = append(errs, fmt.Errorf("community name %q is defined with different values (%s); advertisements using it are refused", name, strings.Join(parts, "; ")))
	}
	return out, errs
}

// BGPAdvertisement is a BGPAdvertisement, parsed and validated.
type BGPAdvertisement struct {
	Name string
	// AggregationLength and AggregationLengthV6 are the prefix lengths
	// addresses are advertised with (32 and 128 by default).
	AggregationLength, AggregationLengthV6 int
	// LocalPref is sent to iBGP peers; 0 means unset (the API cannot tell
	// 0 from unset), and the peer's default applies.
	LocalPref uint32
	// Communities are resolved, without duplicates, sorted by
	// SortCommunities.
	Communities []Community
	// Pools and PoolSelectors choose the pools advertised; both empty
	// means every pool.
	Pools         map[string]bool
	PoolSelectors []labels.Selector
	// NodeSelectors choose the nodes that advertise; empty means all.
	NodeSelectors []labels.Selector
	// ServiceSelectors choose the Services advertised; empty means all.
	ServiceSelectors []labels.Selector
	// Peers names the peers advertised to; empty means every peer.
	Peers map[string]bool
}

// BGPAdvertisementFromAPI parses a BGPAdvertisement, resolving community
// names with aliases (from CommunityAliases).
func BGPAdvertisementFromAPI(a *barelbv1beta1.BGPAdvertisement, aliases map[string]Community) (*BGPAdvertisement, error) {
	out, err := bgpAdvertisementFromAPI(a, aliases)
	if err != nil {
		return nil, fmt.Errorf("BGPAdvertisement %s: %w", a.Name, err)
	}
	return out, nil
}

func bgpAdvertisementFromAPI(a *barelbv1beta1.BGPAdvertisement, aliases map[string]Community) (*BGPAdvertisement, error) {
	s := &a.Spec
	out := &BGPAdvertisement{Name: a.Name, AggregationLength: 32, AggregationLengthV6: 128, LocalPref: s.LocalPref}
	if s.AggregationLength != nil {
		if l := *s.AggregationLength; l < 0 || l > 32 {
			return nil, fmt.Errorf("aggregationLength %d must be from 0 to 32", l)
		}
		out.AggregationLength = int(*s.AggregationLength)
	}
	if s.AggregationLengthV6 != nil {
		if l := *s.AggregationLengthV6; l < 0 || l > 128 {
			return nil, fmt.Errorf("aggregationLengthV6 %d must be from 0 to 128", l)
		}
		out.AggregationLengthV6 = int(*s.AggregationLengthV6)
	}
	seen := map[Community]bool{}
	for _, ref := range s.Communities {
		c, err := resolveCommunity(string(ref), aliases)
		if err != nil {
			return nil, err
		}
		if !seen[c] {
			seen[c] = true
			out.Communities = append(out.Communities, c)
		}
	}
	SortCommunities(out.Communities)
	if len(s.IPAddressPools) > 0 {
		out.Pools = make(map[string]bool, len(s.IPAddressPools))
		for _, p := range s.IPAddressPools {
			out.Pools[p] = true
		}
	}
	if len(s.Peers) > 0 {
		out.Peers = make(map[string]bool, len(s.Peers))
		for _, p := range s.Peers {
			out.Peers[p] = true
		}
	}
	var err error
	if out.PoolSelectors, err = parseSelectors(s.IPAddressPoolSelectors); err != nil {
		return nil, fmt.Errorf("ipAddressPoolSelectors%w", err)
	}
	if out.NodeSelectors, err = parseSelectors(s.NodeSelectors); err != nil {
		return nil, fmt.Errorf("nodeSelectors%w", err)
	}
	if out.ServiceSelectors, err = parseSelectors(s.ServiceSelectors); err != nil {
		return nil, fmt.Errorf("serviceSelectors%w", err)
	}
	return out, nil
}

// resolveCommunity reads a community written out or named.
func resolveCommunity(ref string, aliases map[string]Community) (Community, error) {
	if strings.Contains(ref, ":") {
		c, err := ParseCommunity(ref)
		if err != nil {
			return Community{}, fmt.Errorf("communities: %w", err)
		}
		return c, nil
	}
	if !IsCommunityName(ref) {
		return Community{}, fmt.Errorf("communities: %q is neither a community (65000:100, large:65000:1:2) nor the name of one", ref)
	}
	c, ok := aliases[ref]
	if !ok {
		return Community{}, fmt.Errorf("communities: unknown community name %q (no Community object defines it unambiguously)", ref)
	}
	return c, nil
}

// SortCommunities orders communities: standard before large, then by
// their numbers.
func SortCommunities(cs []Community) {
	sort.Slice(cs, func(i, j int) bool { return cs[i].less(cs[j]) })
}

func (c Community) less(d Community) bool {
	if c.large != d.large {
		return !c.large
	}
	for k := range c.parts {
		if c.parts[k] != d.parts[k] {
			return c.parts[k] < d.parts[k]
		}
	}
	return false
}

// CoversPool tells whether the advertisement advertises the pool's
// addresses.
func (a *BGPAdvertisement) CoversPool(p *Pool) bool {
	if len(a.Pools) == 0 && len(a.PoolSelectors) == 0 {
		return true
	}
	return a.Pools[p.Name] || anyMatches(a.PoolSelectors, p.Labels)
}

// SelectsNode tells whether a node with these labels advertises.
func (a *BGPAdvertisement) SelectsNode(nodeLabels labels.Set) bool {
	return len(a.NodeSelectors) == 0 || anyMatches(a.NodeSelectors, nodeLabels)
}

// SelectsService tells whether a Service with these labels is advertised.
func (a *BGPAdvertisement) SelectsService(svcLabels labels.Set) bool {
	return len(a.ServiceSelectors) == 0 || anyMatches(a.ServiceSelectors, svcLabels)
}

// SelectsPeer tells whether the advertisement goes to the named peer.
func (a *BGPAdvertisement) SelectsPeer(name string) bool {
	return len(a.Peers) == 0 || a.Peers[name]
}

// AggregationLengthFor is the prefix length an address is advertised
// with.
func (a *BGPAdvertisement) AggregationLengthFor(ip netip.Addr) int {
	if ip.Is4() {
		return a.AggregationLength
	}
	return a.AggregationLengthV6
}

// CheckAggregation applies MetalLB's rule: every CIDR of the pool (a range
// counts as the CIDRs that make it up) must be no more specific than the
// aggregation length of its family, so that an aggregate never covers
// more than the pool's own blocks allow. A pool of 198.51.100.0/26 may be
// aggregated to /26 or longer, not to /24.
func (a *BGPAdvertisement) CheckAggregation(p *Pool) error {
	for _, r := range p.Ranges {
		for _, cidr := range r.Prefixes() {
			agg := a.AggregationLengthFor(cidr.Addr())
			if cidr.Bits() > agg {
				name, value := "aggregationLength", a.AggregationLength
				if !cidr.Addr().Is4() {
					name, value = "aggregationLengthV6", a.AggregationLengthV6
				}
				return fmt.Errorf("BGPAdvertisement %s: %s %d is shorter than %s of pool %s: the aggregate would cover addresses outside the pool", a.Name, name, value, cidr, p.Name)
			}
		}
	}
	return nil
}
