package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Annotations barelb reads on Services. MetalLB's names are honoured as
// aliases, so that Services need no edit when moving over.
const (
	AnnotationLoadBalancerIPs = "barelb.io/loadBalancerIPs"
	AnnotationAddressPool     = "barelb.io/address-pool"
	AnnotationAllowSharedIP   = "barelb.io/allow-shared-ip"
	// AnnotationSharingCrossNamespace lists the other namespaces whose
	// Services may share this Service's address (with the same
	// allow-shared-ip key), comma-separated, or "*" for any. Services of
	// two namespaces share only when each lists the other's namespace (or
	// "*"). Without it, sharing stays inside the namespace: a sharing key
	// is no secret, and must not let another team pin an address.
	AnnotationSharingCrossNamespace = "barelb.io/sharing-cross-namespace"
	// AnnotationAllocatedFromPool is written by the controller: the pool the
	// Service's addresses came from.
	AnnotationAllocatedFromPool = "barelb.io/ip-allocated-from-pool"
)

var annotationAliases = map[string][]string{
	AnnotationLoadBalancerIPs: {"metallb.universe.tf/loadBalancerIPs", "metallb.io/loadBalancerIPs"},
	AnnotationAddressPool:     {"metallb.universe.tf/address-pool", "metallb.io/address-pool"},
	AnnotationAllowSharedIP:   {"metallb.universe.tf/allow-shared-ip", "metallb.io/allow-shared-ip"},
}

// Port is a port a Service exposes.
type Port struct {
	Port     int32
	Protocol corev1.Protocol
}

// ServiceRequest is what a LoadBalancer Service asks of barelb, read from
// its spec and annotations.
type ServiceRequest struct {
	// Families are the address families to give the Service, in its
	// preferred order.
	Families []corev1.IPFamily
	// RequireAll is true when the Service must get every family or none
	// (RequireDualStack, or requested addresses).
	RequireAll bool
	// Addresses are the addresses the Service asks for, at most one per
	// family; empty means any.
	Addresses map[corev1.IPFamily]netip.Addr
	// Pool is the pool the Service asks for; empty means any pool that
	// admits it.
	Pool string
	// SharingKey lets Services with the same key share an address.
	SharingKey string
	// SharingNamespaces are the other namespaces whose Services may share
	// the address; "*" means any.
	SharingNamespaces []string
	Ports             []Port
	// ClusterTraffic is externalTrafficPolicy Cluster. (It no longer
	// restricts sharing: an address shared by Local Services is announced
	// from nodes holding endpoints of all of them.)
	ClusterTraffic bool
	// Selector is the Service's pod selector in canonical form.
	Selector string
}

// ServesService tells whether barelb's controller with load-balancer class
// lbClass ("" for the default) is in charge of svc.
func ServesService(svc *corev1.Service, lbClass string) bool {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	if svc.Spec.LoadBalancerClass == nil {
		return lbClass == ""
	}
	return *svc.Spec.LoadBalancerClass == lbClass
}

// ParseServiceRequest reads what svc asks for. The error says what is
// wrong in words meant for the Service's owner. Even with an error, the
// request holds what comes from the spec (families, ports, traffic
// policy, selector), so that the Service's addresses can still be put in
// its family order.
func ParseServiceRequest(svc *corev1.Service) (ServiceRequest, error) {
	req := ServiceRequest{
		ClusterTraffic: svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal,
		Selector:       labels.SelectorFromSet(svc.Spec.Selector).String(),
	}
	for _, p := range svc.Spec.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		req.Ports = append(req.Ports, Port{Port: p.Port, Protocol: proto})
	}
	req.Families, req.RequireAll = families(svc)

	var err error
	if req.Pool, err = annotation(svc, AnnotationAddressPool); err != nil {
		return req, err
	}
	if req.SharingKey, err = annotation(svc, AnnotationAllowSharedIP); err != nil {
		return req, err
	}
	if req.SharingNamespaces, err = sharingNamespaces(svc.Annotations[AnnotationSharingCrossNamespace]); err != nil {
		return req, err
	}

	ips, err := annotation(svc, AnnotationLoadBalancerIPs)
	if err != nil {
		return req, err
	}
	if ips != "" && svc.Spec.LoadBalancerIP != "" {
		return req, fmt.Errorf("both spec.loadBalancerIP and the %s annotation are set; use only the annotation", AnnotationLoadBalancerIPs)
	}
	if ips == "" {
		ips = svc.Spec.LoadBalancerIP
	}
	if ips == "" {
		return req, nil
	}
	req.Addresses = map[corev1.IPFamily]netip.Addr{}
	for _, s := range strings.Split(ips, ",") {
		s = strings.TrimSpace(s)
		ip, err := netip.ParseAddr(s)
		if err != nil || ip.Zone() != "" || ip.Is4In6() {
			return req, fmt.Errorf("requested address %q is not an IP address", s)
		}
		family := FamilyOf(ip)
		if first, dup := req.Addresses[family]; dup {
			// Several per family (as Cilium allows) are refused on
			// purpose, not by accident: see the README, "Requesting
			// addresses".
			return req, fmt.Errorf("requested addresses %q name two %s addresses (%s and %s): barelb gives a Service one address per IP family, "+
				"as Kubernetes gives it one cluster IP per family, and announces, shares and reports it per family; "+
				"ask for one per family, or make one Service per address and let them share the backends (%s)",
				ips, family, first, ip, AnnotationAllowSharedIP)
		}
		if !hasFamily(req.Families, family) {
			return req, fmt.Errorf("requested address %s is %s, but the Service's ipFamilies are %v", ip, family, req.Families)
		}
		req.Addresses[family] = ip
	}
	// Requested addresses decide the families: exactly those, all or none.
	req.Families = keepFamilies(req.Families, req.Addresses)
	req.RequireAll = true
	return req, nil
}

// sharingNamespaces reads the sharing-cross-namespace annotation: "*"
// alone, or namespace names. Anything looser (patterns, "*" among names,
// empty entries) is refused rather than read generously, since it opens
// a team's address to others.
func sharingNamespaces(value string) ([]string, error) {
	value = strings.TrimSpace(value)
	if value == "" {
		return nil, nil
	}
	if value == "*" {
		return []string{"*"}, nil
	}
	var out []string
	for _, s := range strings.Split(value, ",") {
		s = strings.TrimSpace(s)
		if errs := validation.IsDNS1123Label(s); len(errs) > 0 {
			return nil, fmt.Errorf("%s=%q: %q is not a namespace name (list namespace names, or \"*\" alone for any): %s",
				AnnotationSharingCrossNamespace, value, s, strings.Join(errs, "; "))
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// FamilyOf names the family of ip as Kubernetes does.
func FamilyOf(ip netip.Addr) corev1.IPFamily {
	if ip.Is4() {
		return corev1.IPv4Protocol
	}
	return corev1.IPv6Protocol
}

// annotation reads an annotation under its barelb name or any of its
// MetalLB aliases; different values under different names are an error
// rather than a guess.
func annotation(svc *corev1.Service, name string) (string, error) {
	value, from := svc.Annotations[name], name
	for _, alias := range annotationAliases[name] {
		v, ok := svc.Annotations[alias]
		if !ok {
			continue
		}
		if value != "" && v != value {
			return "", fmt.Errorf("annotations %s=%q and %s=%q disagree; keep one", from, value, alias, v)
		}
		value, from = v, alias
	}
	return strings.TrimSpace(value), nil
}

// families reads the Service's families. The API server fills ipFamilies
// and ipFamilyPolicy on every Service; a Service from an older server
// without them is treated as single-stack IPv4.
func families(svc *corev1.Service) ([]corev1.IPFamily, bool) {
	fams := svc.Spec.IPFamilies
	if len(fams) == 0 {
		fams = []corev1.IPFamily{corev1.IPv4Protocol}
	}
	policy := corev1.IPFamilyPolicySingleStack
	if svc.Spec.IPFamilyPolicy != nil {
		policy = *svc.Spec.IPFamilyPolicy
	}
	switch policy {
	case corev1.IPFamilyPolicyRequireDualStack:
		return append([]corev1.IPFamily(nil), fams...), true
	case corev1.IPFamilyPolicyPreferDualStack:
		return append([]corev1.IPFamily(nil), fams...), false
	default:
		return fams[:1:1], true
	}
}

func hasFamily(fams []corev1.IPFamily, f corev1.IPFamily) bool {
	for _, x := range fams {
		if x == f {
			return true
		}
	}
	return false
}

func keepFamilies(fams []corev1.IPFamily, addrs map[corev1.IPFamily]netip.Addr) []corev1.IPFamily {
	var out []corev1.IPFamily
	for _, f := range fams {
		if _, ok := addrs[f]; ok {
			out = append(out, f)
		}
	}
	return out
}
