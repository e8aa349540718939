package convert

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
)

func (c *converter) convertPeer(id string, meta inputMeta, s mlbBGPPeerSpec) error {
	spec := barelbv1beta1.BGPPeerSpec{
		MyASN:                 s.MyASN,
		PeerASN:               s.PeerASN,
		DynamicASN:            barelbv1beta1.DynamicASNMode(s.DynamicASN),
		PeerAddress:           s.PeerAddress,
		Interface:             s.Interface,
		PeerPort:              s.PeerPort,
		SourceAddress:         s.SourceAddress,
		RouterID:              s.RouterID,
		HoldTime:              s.HoldTime,
		KeepaliveTime:         s.KeepaliveTime,
		ConnectTime:           s.ConnectTime,
		EBGPMultiHop:          s.EBGPMultiHop,
		NodeSelectors:         selectors(s.NodeSelectors),
		BFDProfile:            s.BFDProfile,
		EnableGracefulRestart: s.EnableGracefulRestart,
		DisableMP:             s.DisableMP,
	}
	if s.VRF != "" {
		c.warn(id, "spec.vrf", "barelb opens sessions in the default VRF only; the VRF %q is dropped, so this session would start from the default VRF: check that the peer is reachable there, or leave this peer out", s.VRF)
	}
	if s.DualStackAddressFamily {
		c.warn(id, "spec.dualStackAddressFamily", "an FRR-mode setting; dropped: barelb's sessions carry both address families unless disableMP is set")
	}
	switch {
	case s.PasswordSecret != nil && s.PasswordSecret.Name != "":
		spec.PasswordSecret = &barelbv1beta1.SecretRef{Name: s.PasswordSecret.Name}
		c.secretRefs = append(c.secretRefs, secretRef{object: id, field: "spec.passwordSecret", name: s.PasswordSecret.Name, namespace: s.PasswordSecret.Namespace})
		if s.Password != "" {
			c.warn(id, "spec.password", "set together with passwordSecret; dropped in favour of passwordSecret")
		}
	case s.Password != "":
		c.movePassword(id, crField("password"), meta.Name, s.Password, &spec)
	}
	if err := c.checkPeer(id, crField, &spec); err != nil {
		return err
	}
	if err := c.claim("BGPPeer", meta.Name); err != nil {
		return err
	}
	c.peers = append(c.peers, &barelbv1beta1.BGPPeer{
		TypeMeta:   typeMeta("BGPPeer"),
		ObjectMeta: c.meta(meta.Name, meta.Labels, meta.annotations()),
		Spec:       spec,
	})
	return nil
}

// movePassword puts a clear-text password into a Secret of its own, which
// the peer names.
func (c *converter) movePassword(id, field, peer, password string, spec *barelbv1beta1.BGPPeerSpec) {
	name := c.unique("Secret", peer+"-bgp-password")
	c.secrets = append(c.secrets, &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: c.meta(name, nil, nil),
		Type:       corev1.SecretTypeBasicAuth,
		StringData: map[string]string{"password": password},
	})
	spec.PasswordSecret = &barelbv1beta1.SecretRef{Name: name}
	c.warn(id, field, "moved into the Secret %s (type kubernetes.io/basic-auth, key \"password\"), which is part of the output in clear text: keep the output out of version control, or create that Secret yourself and delete it from the output", name)
}

var interfaceName = regexp.MustCompile(`^[^/\s:]+$`)

// checkPeer refuses a peer that cannot open a session and drops, with a
// warning, the settings barelb would refuse.
func (c *converter) checkPeer(id string, field func(string) string, spec *barelbv1beta1.BGPPeerSpec) error {
	if spec.MyASN == 0 {
		return fmt.Errorf("%s: %s is missing or 0", id, field("myASN"))
	}
	switch {
	case spec.PeerASN == 0 && spec.DynamicASN == "":
		return fmt.Errorf("%s: %s is missing or 0 (and no dynamicASN)", id, field("peerASN"))
	case spec.PeerASN != 0 && spec.DynamicASN != "":
		return fmt.Errorf("%s: both peerASN and dynamicASN are set; MetalLB takes one", id)
	case spec.DynamicASN != "" && spec.DynamicASN != barelbv1beta1.InternalASNMode && spec.DynamicASN != barelbv1beta1.ExternalASNMode:
		return fmt.Errorf("%s: %s is %q; want internal or external", id, field("dynamicASN"), spec.DynamicASN)
	}
	switch {
	case spec.PeerAddress == "" && spec.Interface == "":
		return fmt.Errorf("%s: %s is missing", id, field("peerAddress"))
	case spec.PeerAddress != "" && spec.Interface != "":
		return fmt.Errorf("%s: both peerAddress and interface are set; MetalLB takes one", id)
	case spec.PeerAddress != "":
		if _, err := plainIP(spec.PeerAddress); err != nil {
			return fmt.Errorf("%s: %s: %w", id, field("peerAddress"), err)
		}
	case len(spec.Interface) > 15 || !interfaceName.MatchString(spec.Interface):
		return fmt.Errorf("%s: %s %q is not an interface name", id, field("interface"), spec.Interface)
	}
	if spec.SourceAddress != "" {
		if _, err := plainIP(spec.SourceAddress); err != nil {
			c.warn(id, field("sourceAddress"), "%v; dropped (the kernel picks the source address)", err)
			spec.SourceAddress = ""
		}
	}
	if spec.RouterID != "" {
		if ip, err := plainIP(spec.RouterID); err != nil || !ip.Is4() {
			c.warn(id, field("routerID"), "%q is not an IPv4 address; dropped (the node's IPv4 address is used)", spec.RouterID)
			spec.RouterID = ""
		}
	}
	if spec.Interface != "" {
		if spec.SourceAddress != "" {
			c.warn(id, field("sourceAddress"), "an unnumbered session (interface %s) starts from the interface's link-local address; dropped", spec.Interface)
			spec.SourceAddress = ""
		}
		if spec.BFDProfile != "" {
			c.warn(id, field("bfdProfile"), "barelb runs no BFD over an unnumbered session (interface %s); kept, but the session will run without BFD and the peer is reported", spec.Interface)
		}
	}
	if spec.DynamicASN == barelbv1beta1.ExternalASNMode {
		c.warn(id, field("dynamicASN"), "external: barelb takes whatever ASN the router presents and does not refuse one equal to myASN (MetalLB's FRR mode does); check the router's ASN")
	}
	c.checkTimers(id, field, spec)
	ibgp := spec.PeerASN == spec.MyASN || spec.DynamicASN == barelbv1beta1.InternalASNMode
	if spec.EBGPMultiHop && ibgp {
		c.warn(id, field("ebgpMultiHop"), "set on an iBGP session (same ASN on both sides), where it means nothing; dropped")
		spec.EBGPMultiHop = false
	}
	return nil
}

func plainIP(s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	return ip, nil
}

const defaultHoldTime = 90 * time.Second

// checkTimers drops the BGP timers barelb would refuse.
func (c *converter) checkTimers(id string, field func(string) string, spec *barelbv1beta1.BGPPeerSpec) {
	whole := func(d time.Duration) bool { return d%time.Second == 0 }
	if t := spec.HoldTime; t != nil {
		d := t.Duration
		if !whole(d) || (d != 0 && (d < 3*time.Second || d > 65535*time.Second)) {
			c.warn(id, field("holdTime"), "%s is not 0 or whole seconds from 3s to 65535s; dropped (default 90s)", d)
			spec.HoldTime = nil
		}
	}
	if t := spec.KeepaliveTime; t != nil {
		d := t.Duration
		hold := defaultHoldTime
		if spec.HoldTime != nil {
			hold = spec.HoldTime.Duration
		}
		switch {
		case !whole(d) || d < 0 || d > 21845*time.Second:
			c.warn(id, field("keepaliveTime"), "%s is not whole seconds up to 21845s; dropped (default: a third of the hold time)", d)
			spec.KeepaliveTime = nil
		case hold == 0 && d != 0:
			c.warn(id, field("keepaliveTime"), "%s with a hold time of 0 (no keepalives); dropped", d)
			spec.KeepaliveTime = nil
		case hold != 0 && d >= hold:
			c.warn(id, field("keepaliveTime"), "%s is not less than the hold time %s; dropped (default: a third of the hold time)", d, hold)
			spec.KeepaliveTime = nil
		}
	}
	if t := spec.ConnectTime; t != nil {
		d := t.Duration
		if !whole(d) || d < time.Second || d > 65535*time.Second {
			c.warn(id, field("connectTime"), "%s is not whole seconds from 1s to 65535s; dropped (default 5s)", d)
			spec.ConnectTime = nil
		}
	}
}

// peerName makes a name for a legacy peer, which had none, from its
// address: 198.51.100.1 becomes peer-198-51-100-1.
func peerName(address string) string {
	s := strings.ToLower(address)
	s = strings.NewReplacer(".", "-", ":", "-", "%", "-").Replace(s)
	s = strings.Trim(s, "-")
	var b strings.Builder
	for _, r := range s {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "peer"
	}
	name := "peer-" + b.String()
	if len(name) > 63 {
		name = strings.TrimRight(name[:63], "-")
	}
	return name
}
