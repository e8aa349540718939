package servicecache

import (
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
)

// Service is what the speakers read of a LoadBalancer Service.
type Service struct {
	Namespace, Name string
	// UID and ResourceVersion identify the object Events are about.
	UID             types.UID
	ResourceVersion string
	Labels          map[string]string
	// LoadBalancerClass is spec.loadBalancerClass; nil for the default.
	LoadBalancerClass *string
	// Pool is the barelb.io/ip-allocated-from-pool annotation: the pool
	// the controller allocated the addresses from ("" when none).
	Pool string
	// LocalTraffic is externalTrafficPolicy: Local.
	LocalTraffic bool
	// Addresses are the IPs of status.loadBalancer.ingress, in order
	// (entries that are not an IP are left out).
	Addresses []netip.Addr

	key string // namespace/name, made once: every plan reads it
}

// Key is namespace/name, as client.ObjectKey prints it.
func (s *Service) Key() string {
	if s.key == "" {
		return s.Namespace + "/" + s.Name
	}
	return s.key
}

// ServedBy tells whether barelb with load-balancer class lbClass ("" for
// the default) is in charge of the Service (see config.ServesService).
func (s *Service) ServedBy(lbClass string) bool {
	if s.LoadBalancerClass == nil {
		return lbClass == ""
	}
	return *s.LoadBalancerClass == lbClass
}

// Ref is a reference to the Service, for Events.
func (s *Service) Ref() *corev1.ObjectReference {
	return &corev1.ObjectReference{APIVersion: "v1", Kind: "Service", Namespace: s.Namespace, Name: s.Name,
		UID: s.UID, ResourceVersion: s.ResourceVersion}
}

// sameContent tells whether a and b differ in nothing but their resource
// version: an update that changes nothing a reader sees.
func (s *Service) sameContent(o *Service) bool {
	return s.Namespace == o.Namespace && s.Name == o.Name && s.UID == o.UID && s.Pool == o.Pool &&
		s.LocalTraffic == o.LocalTraffic && equalLabels(s.Labels, o.Labels) &&
		(s.LoadBalancerClass == nil) == (o.LoadBalancerClass == nil) &&
		(s.LoadBalancerClass == nil || *s.LoadBalancerClass == *o.LoadBalancerClass) &&
		slices.Equal(s.Addresses, o.Addresses)
}

func equalLabels(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// ServiceRecord is the record the cache keeps of svc; nil for a Service
// that is not of type LoadBalancer, which no speaker reads.
func ServiceRecord(svc *corev1.Service) *Service { return serviceRecord(svc, keep) }

// keep interns nothing.
func keep(s string) string { return s }

func (c *Cache) serviceRecord(svc *corev1.Service) *Service { return serviceRecord(svc, c.intern) }

func serviceRecord(svc *corev1.Service, intern func(string) string) *Service {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return nil
	}
	out := &Service{
		Namespace: intern(svc.Namespace), Name: svc.Name, UID: svc.UID, ResourceVersion: svc.ResourceVersion,
		Labels:       svc.Labels,
		LocalTraffic: svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
		Pool:         intern(svc.Annotations[config.AnnotationAllocatedFromPool]),
	}
	out.key = out.Namespace + "/" + out.Name
	if len(out.Labels) == 0 {
		out.Labels = nil
	}
	if svc.Spec.LoadBalancerClass != nil {
		class := intern(*svc.Spec.LoadBalancerClass)
		out.LoadBalancerClass = &class
	}
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if ip, err := netip.ParseAddr(ing.IP); err == nil {
			out.Addresses = append(out.Addresses, ip)
		}
	}
	return out
}

// endpointSlice is what is kept of an EndpointSlice: the Service it
// belongs to and the nodes of its ready endpoints.
type endpointSlice struct {
	service string // namespace/name
	nodes   []string
}

func (e *endpointSlice) sameContent(o *endpointSlice) bool {
	return e.service == o.service && slices.Equal(e.nodes, o.nodes)
}

// sliceRecord is the record of slice; nil for a slice of no Service or
// without a ready endpoint on a named node, which counts as no slice.
func (c *Cache) sliceRecord(slice *discoveryv1.EndpointSlice) *endpointSlice {
	name := slice.Labels[discoveryv1.LabelServiceName]
	nodes := readyNodes(slice, c.intern)
	if name == "" || len(nodes) == 0 {
		return nil
	}
	return &endpointSlice{service: slice.Namespace + "/" + name, nodes: nodes}
}

// ReadyNodes names, sorted, the nodes of the ready endpoints of slice
// (an endpoint without a ready condition counts as ready).
func ReadyNodes(slice *discoveryv1.EndpointSlice) []string { return readyNodes(slice, keep) }

func readyNodes(slice *discoveryv1.EndpointSlice, intern func(string) string) []string {
	var nodes []string
	for _, ep := range slice.Endpoints {
		if ep.NodeName != nil && (ep.Conditions.Ready == nil || *ep.Conditions.Ready) && !slices.Contains(nodes, *ep.NodeName) {
			nodes = append(nodes, intern(*ep.NodeName))
		}
	}
	slices.Sort(nodes)
	return nodes
}

// Status is what is kept of a ServiceL2Status.
type Status struct {
	Namespace, Name string
	ResourceVersion string
	Status          barelbv1beta1.ServiceL2StatusStatus
}

func (c *Cache) statusRecord(s *barelbv1beta1.ServiceL2Status) *Status {
	out := &Status{Namespace: c.intern(s.Namespace), Name: s.Name, ResourceVersion: s.ResourceVersion, Status: s.Status}
	out.Status.Node = c.intern(out.Status.Node)
	out.Status.ServiceNamespace = c.intern(out.Status.ServiceNamespace)
	for i := range out.Status.Interfaces {
		out.Status.Interfaces[i].Name = c.intern(out.Status.Interfaces[i].Name)
	}
	return out
}
