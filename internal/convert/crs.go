package convert

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
)

// inputMeta is the part of an input object's metadata that carries over.
type inputMeta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// droppedAnnotations are bookkeeping of the tools that wrote the input.
var droppedAnnotations = []string{"kubectl.kubernetes.io/last-applied-configuration"}

func (m inputMeta) annotations() map[string]string {
	if len(m.Annotations) == 0 {
		return nil
	}
	out := map[string]string{}
	for k, v := range m.Annotations {
		out[k] = v
	}
	for _, k := range droppedAnnotations {
		delete(out, k)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func (c *converter) convertObject(d document) error {
	apiVersion, _ := d.obj["apiVersion"].(string)
	kind, _ := d.obj["kind"].(string)
	var meta inputMeta
	if raw, ok := d.obj["metadata"]; ok {
		if err := decode(raw, &meta); err != nil {
			return fmt.Errorf("%s: %s: %w", d.where(), kind, describeDecodeError("metadata", err))
		}
	}
	id := kind + " " + meta.Name
	if meta.Name == "" {
		return fmt.Errorf("%s: %s has no metadata.name", d.where(), kind)
	}
	group, version, _ := strings.Cut(apiVersion, "/")
	if version == "" {
		group, version = "", group
	}
	switch {
	case group == "" && version == "v1" && kind == "ConfigMap":
		return c.withWhere(d, c.convertConfigMap(d, meta))
	case group == "" && version == "v1" && kind == "Secret":
		return c.withWhere(d, c.readSecret(d, meta))
	case group == "metallb.io":
		return c.withWhere(d, c.convertMetalLB(d, version, kind, meta, id))
	case group == "barelb.io":
		return fmt.Errorf("%s: %s is already barelb configuration (apiVersion %s); apply it as it is", d.where(), id, apiVersion)
	default:
		return fmt.Errorf("%s: %s (apiVersion %s) is not MetalLB configuration; convert reads %s", d.where(), id, apiVersion, Kinds)
	}
}

func (c *converter) withWhere(d document, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", d.where(), err)
}

// versions lists the metallb.io versions each kind is read in.
var versions = map[string][]string{
	"IPAddressPool":    {"v1beta1"},
	"L2Advertisement":  {"v1beta1"},
	"BGPAdvertisement": {"v1beta1"},
	"BFDProfile":       {"v1beta1"},
	"Community":        {"v1beta1"},
	"BGPPeer":          {"v1beta1", "v1beta2"},
	"AddressPool":      {"v1alpha1", "v1beta1"},
	"ServiceL2Status":  {"v1beta1"},
	"ServiceBGPStatus": {"v1beta1"},
}

func (c *converter) convertMetalLB(d document, version, kind string, meta inputMeta, id string) error {
	known, ok := versions[kind]
	if !ok {
		return fmt.Errorf("%s: kind %s of metallb.io is not one convert reads; it reads %s", id, kind, Kinds)
	}
	if !contains(known, version) {
		return fmt.Errorf("%s: metallb.io/%s is not a version of %s convert reads (it reads %s)", id, version, kind, strings.Join(known, ", "))
	}
	if kind == "ServiceL2Status" || kind == "ServiceBGPStatus" {
		c.warn(id, "", "skipped: status objects are written by the speakers, not configured")
		return nil
	}
	for key := range d.obj {
		switch key {
		case "apiVersion", "kind", "metadata", "spec", "status":
		default:
			c.warn(id, key, "not a field of %s; dropped", kind)
		}
	}
	spec := d.obj["spec"]
	switch kind {
	case "IPAddressPool":
		var s mlbIPAddressPoolSpec
		if err := c.decodeSpec(id, spec, &s); err != nil {
			return err
		}
		return c.convertIPAddressPool(id, meta, s)
	case "L2Advertisement":
		var s mlbL2AdvertisementSpec
		if err := c.decodeSpec(id, spec, &s); err != nil {
			return err
		}
		if err := c.claim("L2Advertisement", meta.Name); err != nil {
			return err
		}
		c.l2Advs = append(c.l2Advs, &barelbv1beta1.L2Advertisement{
			TypeMeta:   typeMeta("L2Advertisement"),
			ObjectMeta: c.meta(meta.Name, meta.Labels, meta.annotations()),
			Spec: barelbv1beta1.L2AdvertisementSpec{
				IPAddressPools:         s.IPAddressPools,
				IPAddressPoolSelectors: selectors(s.IPAddressPoolSelectors),
				NodeSelectors:          selectors(s.NodeSelectors),
				Interfaces:             s.Interfaces,
			},
		})
		return nil
	case "BGPAdvertisement":
		var s mlbBGPAdvertisementSpec
		if err := c.decodeSpec(id, spec, &s); err != nil {
			return err
		}
		if err := c.claim("BGPAdvertisement", meta.Name); err != nil {
			return err
		}
		adv := &barelbv1beta1.BGPAdvertisement{
			TypeMeta:   typeMeta("BGPAdvertisement"),
			ObjectMeta: c.meta(meta.Name, meta.Labels, meta.annotations()),
			Spec: barelbv1beta1.BGPAdvertisementSpec{
				AggregationLength:      s.AggregationLength,
				AggregationLengthV6:    s.AggregationLengthV6,
				LocalPref:              s.LocalPref,
				IPAddressPools:         s.IPAddressPools,
				IPAddressPoolSelectors: selectors(s.IPAddressPoolSelectors),
				NodeSelectors:          selectors(s.NodeSelectors),
				Peers:                  s.Peers,
			},
		}
		adv.Spec.Communities = c.communityRefs(id, "spec.communities", s.Communities, nil)
		c.checkAggregation(id, crField, &adv.Spec)
		c.bgpAdvs = append(c.bgpAdvs, adv)
		return nil
	case "BFDProfile":
		var s mlbBFDProfileSpec
		if err := c.decodeSpec(id, spec, &s); err != nil {
			return err
		}
		return c.addBFDProfile(id, meta, barelbv1beta1.BFDProfileSpec{
			ReceiveInterval:  s.ReceiveInterval,
			TransmitInterval: s.TransmitInterval,
			DetectMultiplier: s.DetectMultiplier,
			EchoInterval:     s.EchoInterval,
			EchoMode:         s.EchoMode,
			PassiveMode:      s.PassiveMode,
			MinimumTTL:       s.MinimumTTL,
		}, crField)
	case "Community":
		var s mlbCommunitySpec
		if err := c.decodeSpec(id, spec, &s); err != nil {
			return err
		}
		var aliases []barelbv1beta1.CommunityAlias
		seen := map[string]bool{}
		for i, a := range s.Communities {
			field := fmt.Sprintf("spec.communities[%d]", i)
			if !config.IsCommunityName(a.Name) {
				c.warn(id, field+".name", "%q cannot name a community in barelb (letters, digits, '-', '_', '.'); dropped", a.Name)
				continue
			}
			if seen[a.Name] {
				c.warn(id, field+".name", "%q is defined twice; the second is dropped", a.Name)
				continue
			}
			if _, err := config.ParseCommunity(a.Value); err != nil {
				c.warn(id, field+".value", "%v; dropped", err)
				continue
			}
			seen[a.Name] = true
			aliases = append(aliases, barelbv1beta1.CommunityAlias{Name: a.Name, Value: barelbv1beta1.CommunityValue(a.Value)})
		}
		if err := c.claim("Community", meta.Name); err != nil {
			return err
		}
		c.communities = append(c.communities, &barelbv1beta1.Community{
			TypeMeta:   typeMeta("Community"),
			ObjectMeta: c.meta(meta.Name, meta.Labels, meta.annotations()),
			Spec:       barelbv1beta1.CommunitySpec{Communities: aliases},
		})
		return nil
	case "BGPPeer":
		var s mlbBGPPeerSpec
		if err := c.decodeSpec(id, spec, &s); err != nil {
			return err
		}
		return c.convertPeer(id, meta, s)
	case "AddressPool":
		var s mlbAddressPoolSpec
		if err := c.decodeSpec(id, spec, &s); err != nil {
			return err
		}
		pool := legacyPool{
			Name: meta.Name, Protocol: s.Protocol, Addresses: s.Addresses,
			AvoidBuggyIPs: s.AvoidBuggyIPs, AutoAssign: s.AutoAssign,
		}
		for _, a := range s.BGPAdvertisements {
			lp := a.LocalPref
			pool.BGPAdvertisements = append(pool.BGPAdvertisements, legacyBGPAdvertisement{
				AggregationLength: a.AggregationLength, AggregationLengthV6: a.AggregationLengthV6,
				LocalPref: &lp, Communities: a.Communities,
			})
		}
		c.warn(id, "", "AddressPool is deprecated since MetalLB 0.13; converted to an IPAddressPool and advertisements of the same name")
		return c.convertLegacyPool(id, crField, pool, meta, nil)
	}
	return fmt.Errorf("%s: internal error: kind %s has no conversion", id, kind)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func typeMeta(kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: barelbv1beta1.GroupVersion.String(), Kind: kind}
}

// decode converts a generic value into a typed one.
func decode(raw interface{}, into interface{}) error {
	data, err := json.Marshal(raw)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, into)
}

// describeDecodeError says in a user's words what did not fit, with the
// field's path under prefix.
func describeDecodeError(prefix string, err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := prefix
		if te.Field != "" {
			field = prefix + "." + te.Field
		}
		return fmt.Errorf("%s: a %s does not fit a field of type %s", field, te.Value, te.Type)
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// decodeSpec decodes an object's spec and warns about every field the
// typed spec does not hold.
func (c *converter) decodeSpec(id string, raw interface{}, into interface{}) error {
	return c.decodeReporting(id, "spec", raw, into)
}

func (c *converter) decodeReporting(id, prefix string, raw interface{}, into interface{}) error {
	if raw == nil {
		raw = map[string]interface{}{}
	}
	if _, ok := raw.(map[string]interface{}); !ok {
		return fmt.Errorf("%s: %s is a %s, not an object", id, prefix, kindOfValue(raw))
	}
	if err := decode(raw, into); err != nil {
		return fmt.Errorf("%s: %w", id, describeDecodeError(prefix, err))
	}
	var back interface{}
	if err := decode(into, &back); err != nil {
		return fmt.Errorf("%s: %s: %w", id, prefix, err)
	}
	var unknown []string
	unknownPaths(prefix, raw, back, &unknown)
	sort.Strings(unknown)
	for _, p := range unknown {
		c.warn(id, p, "not a MetalLB field convert knows; dropped")
	}
	return nil
}

// unknownPaths lists the paths of in that are missing from known.
func unknownPaths(prefix string, in, known interface{}, out *[]string) {
	switch v := in.(type) {
	case map[string]interface{}:
		k, ok := known.(map[string]interface{})
		if !ok {
			return
		}
		for key, val := range v {
			kv, present := k[key]
			if !present {
				*out = append(*out, prefix+"."+key)
				continue
			}
			unknownPaths(prefix+"."+key, val, kv, out)
		}
	case []interface{}:
		k, ok := known.([]interface{})
		if !ok {
			return
		}
		for i, val := range v {
			if i < len(k) {
				unknownPaths(fmt.Sprintf("%s[%d]", prefix, i), val, k[i], out)
			}
		}
	}
}

func selectors(in []mlbSelector) []barelbv1beta1.Selector {
	var out []barelbv1beta1.Selector
	for _, s := range in {
		out = append(out, selector(s.MatchLabels, s.MatchExpressions))
	}
	return out
}

func selector(labels map[string]string, exprs []mlbSelectorRequirement) barelbv1beta1.Selector {
	var sel barelbv1beta1.Selector
	if len(labels) > 0 {
		sel.MatchLabels = map[string]barelbv1beta1.LabelValue{}
		for k, v := range labels {
			sel.MatchLabels[k] = barelbv1beta1.LabelValue(v)
		}
	}
	for _, e := range exprs {
		sel.MatchExpressions = append(sel.MatchExpressions, barelbv1beta1.SelectorRequirement{
			Key: e.Key, Operator: metav1.LabelSelectorOperator(e.Operator), Values: e.Values,
		})
	}
	return sel
}

// crField names a field of a custom resource's spec: barelb's names are
// MetalLB's.
func crField(name string) string { return "spec." + name }

// checkAddresses refuses what neither MetalLB nor barelb would hand out.
func checkAddresses(addresses []string) ([]barelbv1beta1.AddressRange, error) {
	if len(addresses) == 0 {
		return nil, fmt.Errorf("addresses: the pool has no addresses")
	}
	if len(addresses) > 32 {
		return nil, fmt.Errorf("addresses: %d blocks; barelb takes at most 32 per pool: merge adjacent ones or split the pool", len(addresses))
	}
	var out []barelbv1beta1.AddressRange
	for i, a := range addresses {
		if _, err := config.ParseAddressRange(a); err != nil {
			return nil, fmt.Errorf("addresses[%d]: %w", i, err)
		}
		out = append(out, barelbv1beta1.AddressRange(a))
	}
	return out, nil
}

func (c *converter) convertIPAddressPool(id string, meta inputMeta, s mlbIPAddressPoolSpec) error {
	addrs, err := checkAddresses(s.Addresses)
	if err != nil {
		return fmt.Errorf("%s: spec.%w", id, err)
	}
	if err := c.claim("IPAddressPool", meta.Name); err != nil {
		return err
	}
	pool := &barelbv1beta1.IPAddressPool{
		TypeMeta:   typeMeta("IPAddressPool"),
		ObjectMeta: c.meta(meta.Name, meta.Labels, meta.annotations()),
		Spec: barelbv1beta1.IPAddressPoolSpec{
			Addresses:     addrs,
			AutoAssign:    s.AutoAssign,
			AvoidBuggyIPs: s.AvoidBuggyIPs,
		},
	}
	if sa := s.ServiceAllocation; sa != nil {
		pool.Spec.ServiceAllocation = &barelbv1beta1.ServiceAllocation{
			Priority:           sa.Priority,
			Namespaces:         sa.Namespaces,
			NamespaceSelectors: selectors(sa.NamespaceSelectors),
			ServiceSelectors:   selectors(sa.ServiceSelectors),
		}
	}
	c.pools = append(c.pools, pool)
	return nil
}

// communityRefs carries communities over: values and names of Community
// entries as they are, legacy aliases resolved through aliases.
func (c *converter) communityRefs(id, field string, in []string, aliases map[string]string) []barelbv1beta1.CommunityRef {
	var out []barelbv1beta1.CommunityRef
	seen := map[string]bool{}
	for i, s := range in {
		f := fmt.Sprintf("%s[%d]", field, i)
		value := s
		if v, ok := aliases[s]; ok {
			value = v
		}
		switch {
		case strings.Contains(value, ":"):
			if _, err := config.ParseCommunity(value); err != nil {
				c.warn(id, f, "%v; dropped", err)
				continue
			}
		case aliases != nil:
			c.warn(id, f, "%q is neither a community nor an alias defined in bgp-communities; dropped", s)
			continue
		case !config.IsCommunityName(value):
			c.warn(id, f, "%q is neither a community nor a name of one; dropped", s)
			continue
		}
		if seen[value] {
			continue
		}
		seen[value] = true
		out = append(out, barelbv1beta1.CommunityRef(value))
	}
	return out
}

func (c *converter) checkAggregation(id string, field func(string) string, spec *barelbv1beta1.BGPAdvertisementSpec) {
	if l := spec.AggregationLength; l != nil && (*l < 0 || *l > 32) {
		c.warn(id, field("aggregationLength"), "%d is not a prefix length from 0 to 32; dropped (advertises each address alone)", *l)
		spec.AggregationLength = nil
	}
	if l := spec.AggregationLengthV6; l != nil && (*l < 0 || *l > 128) {
		c.warn(id, field("aggregationLengthV6"), "%d is not a prefix length from 0 to 128; dropped (advertises each address alone)", *l)
		spec.AggregationLengthV6 = nil
	}
}

// addBFDProfile checks a profile against barelb's ranges and adds it.
func (c *converter) addBFDProfile(id string, meta inputMeta, spec barelbv1beta1.BFDProfileSpec, field func(string) string) error {
	if errs := validation.IsDNS1123Subdomain(meta.Name); len(errs) > 0 {
		return fmt.Errorf("%s: the name %q is not a valid object name: %s", id, meta.Name, strings.Join(errs, "; "))
	}
	inRange := func(name string, v **uint32, lo, hi uint32) {
		if *v != nil && (**v < lo || **v > hi) {
			c.warn(id, field(name), "%d is outside barelb's range %d to %d; dropped (barelb's default applies)", **v, lo, hi)
			*v = nil
		}
	}
	inRange("receiveInterval", &spec.ReceiveInterval, 10, 60000)
	inRange("transmitInterval", &spec.TransmitInterval, 10, 60000)
	inRange("detectMultiplier", &spec.DetectMultiplier, 2, 255)
	inRange("echoInterval", &spec.EchoInterval, 10, 60000)
	inRange("minimumTtl", &spec.MinimumTTL, 1, 254)
	if spec.EchoMode != nil && *spec.EchoMode {
		c.warn(id, field("echoMode"), "barelb's BFD sends no echo packets (an FRR feature); kept, but the profile will be reported as asking for echo mode")
	}
	if err := c.claim("BFDProfile", meta.Name); err != nil {
		return err
	}
	c.bfdProfiles = append(c.bfdProfiles, &barelbv1beta1.BFDProfile{
		TypeMeta:   typeMeta("BFDProfile"),
		ObjectMeta: c.meta(meta.Name, meta.Labels, meta.annotations()),
		Spec:       spec,
	})
	return nil
}

// readSecret keeps a Secret of the input for the peers that name it.
func (c *converter) readSecret(d document, meta inputMeta) error {
	var s corev1.Secret
	if err := decode(d.obj, &s); err != nil {
		return fmt.Errorf("the Secret %s: %w", meta.Name, err)
	}
	id := meta.Name
	if meta.Namespace != "" {
		id = meta.Namespace + "/" + meta.Name
	}
	c.inputSecrets = append(c.inputSecrets, inputSecret{id: id, namespace: meta.Namespace, secret: &s})
	return nil
}

// resolveSecrets copies the input Secrets that peers name into barelb's
// namespace and warns about the ones missing.
func (c *converter) resolveSecrets() {
	used := map[string]bool{}
	for _, ref := range c.secretRefs {
		var found *inputSecret
		for i := range c.inputSecrets {
			s := &c.inputSecrets[i]
			if s.secret.Name == ref.name && (ref.namespace == "" || s.namespace == "" || s.namespace == ref.namespace) {
				found = s
				break
			}
		}
		if found == nil {
			from := ref.name
			if ref.namespace != "" {
				from = ref.namespace + "/" + ref.name
			}
			c.warn(ref.object, ref.field, "the Secret %s is not in the input: copy it into %s (same name, type kubernetes.io/basic-auth, key \"password\"); barelb reads Secrets only in its own namespace", from, c.opts.Namespace)
			continue
		}
		if used[found.id] {
			continue
		}
		used[found.id] = true
		if found.secret.Type != corev1.SecretTypeBasicAuth {
			c.warn("Secret "+found.id, "type", "is %q; MetalLB and barelb expect kubernetes.io/basic-auth", found.secret.Type)
		}
		if c.names["Secret/"+found.secret.Name] {
			c.warn("Secret "+found.id, "", "another Secret of this name is already in the output; skipped")
			continue
		}
		c.names["Secret/"+found.secret.Name] = true
		c.secrets = append(c.secrets, &corev1.Secret{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: c.meta(found.secret.Name, found.secret.Labels, inputMeta{Annotations: found.secret.Annotations}.annotations()),
			Type:       found.secret.Type,
			Data:       found.secret.Data,
			StringData: found.secret.StringData,
		})
	}
	for _, s := range c.inputSecrets {
		if !used[s.id] {
			c.warn("Secret "+s.id, "", "no BGPPeer names it as its passwordSecret; skipped")
		}
	}
}
