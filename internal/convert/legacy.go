package convert

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
)

// legacyNames are the ConfigMap format's names of barelb's (and the
// metallb.io CRs') fields.
var legacyNames = map[string]string{
	"receiveInterval":     "receive-interval",
	"transmitInterval":    "transmit-interval",
	"detectMultiplier":    "detect-multiplier",
	"echoInterval":        "echo-interval",
	"echoMode":            "echo-mode",
	"passiveMode":         "passive-mode",
	"minimumTtl":          "minimum-ttl",
	"myASN":               "my-asn",
	"peerASN":             "peer-asn",
	"peerAddress":         "peer-address",
	"sourceAddress":       "source-address",
	"peerPort":            "peer-port",
	"holdTime":            "hold-time",
	"keepaliveTime":       "keepalive-time",
	"routerID":            "router-id",
	"bfdProfile":          "bfd-profile",
	"ebgpMultiHop":        "ebgp-multihop",
	"nodeSelectors":       "node-selectors",
	"bgpAdvertisements":   "bgp-advertisements",
	"aggregationLength":   "aggregation-length",
	"aggregationLengthV6": "aggregation-length-v6",
	"localPref":           "localpref",
	"autoAssign":          "auto-assign",
	"avoidBuggyIPs":       "avoid-buggy-ips",
}

var pathSegment = regexp.MustCompile(`^([A-Za-z0-9]+)(.*)$`)

// legacyField returns a function naming fields under prefix with the
// ConfigMap format's names.
func legacyField(prefix string) func(string) string {
	return func(path string) string {
		parts := strings.Split(path, ".")
		for i, p := range parts {
			if m := pathSegment.FindStringSubmatch(p); m != nil {
				if n, ok := legacyNames[m[1]]; ok {
					parts[i] = n + m[2]
				}
			}
		}
		return prefix + strings.Join(parts, ".")
	}
}

// convertConfigMap converts MetalLB's configuration from before 0.13.
func (c *converter) convertConfigMap(d document, meta inputMeta) error {
	id := "ConfigMap " + meta.Name
	if meta.Namespace != "" {
		id = "ConfigMap " + meta.Namespace + "/" + meta.Name
	}
	data, _ := d.obj["data"].(map[string]interface{})
	raw, ok := data["config"].(string)
	if !ok {
		return fmt.Errorf("%s has no data.config: it is not MetalLB's configuration (convert reads %s)", id, Kinds)
	}
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k != "config" {
			c.warn(id, "data."+k, "not part of MetalLB's configuration; dropped")
		}
	}
	var generic interface{}
	if err := yaml.Unmarshal([]byte(raw), &generic); err != nil {
		return fmt.Errorf("%s: data.config is not valid YAML: %w", id, err)
	}
	if generic == nil {
		c.warn(id, "data.config", "empty; nothing to convert")
		return nil
	}
	var cfg legacyConfig
	if err := c.decodeReporting(id, "data.config", generic, &cfg); err != nil {
		return err
	}

	for i, p := range cfg.BFDProfiles {
		prefix := fmt.Sprintf("data.config.bfd-profiles[%d].", i)
		if p.Name == "" {
			return fmt.Errorf("%s: %sname is missing", id, prefix)
		}
		spec := barelbv1beta1.BFDProfileSpec{
			ReceiveInterval:  p.ReceiveInterval,
			TransmitInterval: p.TransmitInterval,
			DetectMultiplier: p.DetectMultiplier,
			EchoInterval:     p.EchoInterval,
			MinimumTTL:       p.MinimumTTL,
		}
		if p.EchoMode {
			spec.EchoMode = &p.EchoMode
		}
		if p.PassiveMode {
			spec.PassiveMode = &p.PassiveMode
		}
		if err := c.addBFDProfile(id, inputMeta{Name: p.Name}, spec, legacyField(prefix)); err != nil {
			return err
		}
	}

	aliases := c.legacyCommunities(id, cfg.BGPCommunities)

	for i, p := range cfg.Peers {
		if err := c.convertLegacyPeer(id, i, p); err != nil {
			return err
		}
	}
	for i, p := range cfg.Pools {
		if err := c.convertLegacyPool(id, legacyField(fmt.Sprintf("data.config.address-pools[%d].", i)), p, inputMeta{Name: p.Name}, aliases); err != nil {
			return err
		}
	}
	return nil
}

// legacyCommunities keeps the aliases of bgp-communities in a Community
// object, so that their names stay at hand, and returns them for resolving
// the advertisements' communities into values.
func (c *converter) legacyCommunities(id string, in map[string]string) map[string]string {
	aliases := map[string]string{}
	names := make([]string, 0, len(in))
	for name := range in {
		names = append(names, name)
	}
	sort.Strings(names)
	var entries []barelbv1beta1.CommunityAlias
	for _, name := range names {
		value := in[name]
		field := "data.config.bgp-communities." + name
		if _, err := config.ParseCommunity(value); err != nil {
			c.warn(id, field, "%v; dropped", err)
			continue
		}
		aliases[name] = value
		if !config.IsCommunityName(name) {
			c.warn(id, field, "%q cannot name a community in barelb; its value is used where it is referred to, but it gets no entry in the Community object", name)
			continue
		}
		entries = append(entries, barelbv1beta1.CommunityAlias{Name: name, Value: barelbv1beta1.CommunityValue(value)})
	}
	if len(entries) > 0 {
		name := c.unique("Community", "bgp-communities")
		c.communities = append(c.communities, &barelbv1beta1.Community{
			TypeMeta:   typeMeta("Community"),
			ObjectMeta: c.meta(name, nil, nil),
			Spec:       barelbv1beta1.CommunitySpec{Communities: entries},
		})
	}
	return aliases
}

func (c *converter) convertLegacyPeer(id string, i int, p legacyPeer) error {
	prefix := fmt.Sprintf("data.config.peers[%d].", i)
	field := legacyField(prefix)
	spec := barelbv1beta1.BGPPeerSpec{
		MyASN:         p.MyASN,
		PeerASN:       p.PeerASN,
		PeerAddress:   p.PeerAddress,
		SourceAddress: p.SourceAddress,
		PeerPort:      p.PeerPort,
		RouterID:      p.RouterID,
		BFDProfile:    p.BFDProfile,
		EBGPMultiHop:  p.EBGPMultiHop,
	}
	for _, t := range []struct {
		name string
		in   string
		out  **metav1.Duration
	}{{"holdTime", p.HoldTime, &spec.HoldTime}, {"keepaliveTime", p.KeepaliveTime, &spec.KeepaliveTime}} {
		if t.in == "" {
			continue
		}
		d, err := time.ParseDuration(t.in)
		if err != nil {
			c.warn(id, field(t.name), "%q is not a duration like 90s; dropped", t.in)
			continue
		}
		*t.out = &metav1.Duration{Duration: d}
	}
	for _, s := range p.NodeSelectors {
		var exprs []mlbSelectorRequirement
		for _, e := range s.MatchExpressions {
			exprs = append(exprs, mlbSelectorRequirement(e))
		}
		spec.NodeSelectors = append(spec.NodeSelectors, selector(s.MatchLabels, exprs))
	}
	if err := c.checkPeer(id, field, &spec); err != nil {
		return err
	}
	name := c.unique("BGPPeer", peerName(p.PeerAddress))
	if p.Password != "" {
		c.movePassword(id, field("password"), name, p.Password, &spec)
	}
	c.peers = append(c.peers, &barelbv1beta1.BGPPeer{
		TypeMeta:   typeMeta("BGPPeer"),
		ObjectMeta: c.meta(name, nil, nil),
		Spec:       spec,
	})
	return nil
}

// convertLegacyPool turns a pool of the ConfigMap format (or of the
// AddressPool kind) into an IPAddressPool and the advertisements its
// protocol implied. aliases resolves community names (nil: names are
// Community entries and stay as they are).
func (c *converter) convertLegacyPool(id string, field func(string) string, p legacyPool, meta inputMeta, aliases map[string]string) error {
	if p.Name == "" {
		return fmt.Errorf("%s: %s is missing", id, field("name"))
	}
	if errs := validation.IsDNS1123Subdomain(p.Name); len(errs) > 0 {
		return fmt.Errorf("%s: %s: the pool name %q cannot name an object (%s); rename the pool, and the Services' address-pool annotations with it",
			id, field("name"), p.Name, strings.Join(errs, "; "))
	}
	addrs, err := checkAddresses(p.Addresses)
	if err != nil {
		return fmt.Errorf("%s: %s", id, field(err.Error()))
	}
	switch p.Protocol {
	case "layer2", "bgp":
	case "":
		return fmt.Errorf("%s: %s is missing; want layer2 or bgp", id, field("protocol"))
	default:
		return fmt.Errorf("%s: %s is %q; want layer2 or bgp", id, field("protocol"), p.Protocol)
	}
	if err := c.claim("IPAddressPool", p.Name); err != nil {
		return err
	}
	c.pools = append(c.pools, &barelbv1beta1.IPAddressPool{
		TypeMeta:   typeMeta("IPAddressPool"),
		ObjectMeta: c.meta(p.Name, meta.Labels, meta.annotations()),
		Spec: barelbv1beta1.IPAddressPoolSpec{
			Addresses:     addrs,
			AutoAssign:    p.AutoAssign,
			AvoidBuggyIPs: p.AvoidBuggyIPs,
		},
	})
	pools := []string{p.Name}
	if p.Protocol == "layer2" {
		if len(p.BGPAdvertisements) > 0 {
			c.warn(id, field("bgpAdvertisements"), "ignored by MetalLB for a layer2 pool; dropped")
		}
		c.l2Advs = append(c.l2Advs, &barelbv1beta1.L2Advertisement{
			TypeMeta:   typeMeta("L2Advertisement"),
			ObjectMeta: c.meta(c.unique("L2Advertisement", p.Name), nil, nil),
			Spec:       barelbv1beta1.L2AdvertisementSpec{IPAddressPools: pools},
		})
		return nil
	}
	if len(p.BGPAdvertisements) == 0 {
		c.bgpAdvs = append(c.bgpAdvs, &barelbv1beta1.BGPAdvertisement{
			TypeMeta:   typeMeta("BGPAdvertisement"),
			ObjectMeta: c.meta(c.unique("BGPAdvertisement", p.Name), nil, nil),
			Spec:       barelbv1beta1.BGPAdvertisementSpec{IPAddressPools: pools},
		})
		return nil
	}
	for i, a := range p.BGPAdvertisements {
		base := p.Name
		if len(p.BGPAdvertisements) > 1 {
			base = fmt.Sprintf("%s-%d", p.Name, i+1)
		}
		adv := &barelbv1beta1.BGPAdvertisement{
			TypeMeta:   typeMeta("BGPAdvertisement"),
			ObjectMeta: c.meta(c.unique("BGPAdvertisement", base), nil, nil),
			Spec: barelbv1beta1.BGPAdvertisementSpec{
				IPAddressPools:      pools,
				AggregationLength:   a.AggregationLength,
				AggregationLengthV6: a.AggregationLengthV6,
			},
		}
		if a.LocalPref != nil {
			adv.Spec.LocalPref = *a.LocalPref
		}
		advField := fmt.Sprintf("bgpAdvertisements[%d]", i)
		adv.Spec.Communities = c.communityRefs(id, field(advField+".communities"), a.Communities, aliases)
		c.checkAggregation(id, func(n string) string { return field(advField + "." + n) }, &adv.Spec)
		c.bgpAdvs = append(c.bgpAdvs, adv)
	}
	return nil
}
