package allocation

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
)

// TestSafety: no mistake, second writer or tenant moves, steals or
// misroutes an address (issue 14).
func TestSafety(t *testing.T) {
	cl := startCluster(t, 1)

	t.Run("sharing stays inside a namespace unless both sides allow more", func(t *testing.T) {
		cl.t = t
		cl.createNamespace("xns-a", nil)
		cl.createNamespace("xns-b", nil)
		cl.pool("xns", "xns-a", func(s *barelbv1beta1.IPAddressPoolSpec) {
			s.ServiceAllocation.Namespaces = []string{"xns-a", "xns-b"}
		}, "198.51.100.160/29")
		cl.service("xns-a", "web", annotate(config.AnnotationAllowSharedIP, "front"))
		cl.waitIPs("xns-a", "web", "198.51.100.160")

		// Another team that knows the key neither pins nor joins the address.
		port := func(p int32) func(*corev1.Service) {
			return func(s *corev1.Service) { s.Spec.Ports = []corev1.ServicePort{{Name: "x", Port: p, Protocol: corev1.ProtocolTCP}} }
		}
		both := func(fs ...func(*corev1.Service)) func(*corev1.Service) {
			return func(s *corev1.Service) {
				for _, f := range fs {
					f(s)
				}
			}
		}
		cl.service("xns-b", "pin", both(port(81), annotate(config.AnnotationAllowSharedIP, "front", config.AnnotationLoadBalancerIPs, "198.51.100.160")))
		cl.waitEvent("xns-b", "pin", ReasonAddressInUse, "198.51.100.160", "namespace xns-a")
		cl.service("xns-b", "join", both(port(82), annotate(config.AnnotationAllowSharedIP, "front", config.AnnotationSharingCrossNamespace, "*")))
		cl.waitIPs("xns-b", "join", "198.51.100.161")

		// Once both sides allow it, they share.
		cl.updateService("xns-a", "web", annotate(config.AnnotationSharingCrossNamespace, "xns-b"))
		cl.service("xns-b", "agreed", both(port(83), annotate(config.AnnotationAllowSharedIP, "front", config.AnnotationSharingCrossNamespace, "xns-a")))
		cl.waitIPs("xns-b", "agreed", "198.51.100.160")
		cl.waitIPs("xns-a", "web", "198.51.100.160")
	})
}
