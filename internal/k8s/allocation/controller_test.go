package allocation

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
)

func policy(p corev1.IPFamilyPolicy) *corev1.IPFamilyPolicy { return &p }

func annotate(kv ...string) func(*corev1.Service) {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			s.Annotations[kv[i]] = kv[i+1]
		}
	}
}

func TestAllocation(t *testing.T) {
	cl := startCluster(t, 1)
	ctx := context.Background()

	t.Run("a LoadBalancer Service gets the lowest free address, recorded with its pool", func(t *testing.T) {
		cl.t = t
		cl.createNamespace("basic", nil)
		cl.pool("basic", "basic", nil, "198.51.100.0/29")
		svc := cl.service("basic", "web", nil)
		got := cl.waitIPs("basic", "web", "198.51.100.0")
		if m := got.Status.LoadBalancer.Ingress[0].IPMode; m == nil || *m != corev1.LoadBalancerIPModeVIP {
			t.Errorf("ipMode %v, want VIP", m)
		}
		if p := got.Annotations[config.AnnotationAllocatedFromPool]; p != "basic" {
			t.Errorf("pool annotation %q, want basic", p)
		}
		cl.waitEvent("basic", svc.Name, ReasonAllocated, "198.51.100.0", "pool basic")
		cl.service("basic", "api", nil)
		cl.waitIPs("basic", "api", "198.51.100.1")
	})

	t.Run("changing the type away or deleting frees the address and clears the status", func(t *testing.T) {
		cl.t = t
		cl.createNamespace("release", nil)
		cl.pool("release", "release", nil, "198.51.100.8-198.51.100.9")
		cl.service("release", "a", nil)
		cl.waitIPs("release", "a", "198.51.100.8")
		cl.service("release", "b", nil)
		cl.waitIPs("release", "b", "198.51.100.9")
		cl.service("release", "c", nil)
		cl.waitEvent("release", "c", ReasonPoolExhausted, "out of IPv4 addresses")
		cl.waitServicesWaiting(1)

		cl.updateService("release", "a", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeClusterIP
			s.Spec.AllocateLoadBalancerNodePorts = nil
		})
		cl.waitIPs("release", "a")
		cl.eventually("pool annotation removed after the type changed", func() string {
			if p, ok := cl.get("release", "a").Annotations[config.AnnotationAllocatedFromPool]; ok {
				return "still " + p
			}
			return ""
		})
		cl.waitIPs("release", "c", "198.51.100.8")
		cl.waitServicesWaiting(0)

		if err := cl.c.Delete(ctx, cl.get("release", "b")); err != nil {
			t.Fatal(err)
		}
		cl.service("release", "d", nil)
		cl.waitIPs("release", "d", "198.51.100.9")
	})

	t.Run("Services of another load-balancer class are left alone", func(t *testing.T) {
		cl.t = t
		cl.createNamespace("class", nil)
		cl.pool("class", "class", nil, "198.51.100.16/30")
		other := "example.com/other"
		cl.service("class", "theirs", func(s *corev1.Service) { s.Spec.LoadBalancerClass = &other })
		cl.service("class", "ours", nil)
		cl.waitIPs("class", "ours", "198.51.100.16")
		cl.stayPending("class", "theirs")
	})

	t.Run("pool by annotation, priority order, autoAssign false", func(t *testing.T) {
		cl.t = t
		cl.createNamespace("order", nil)
		no := false
		cl.pool("order-manual", "order", func(s *barelbv1beta1.IPAddressPoolSpec) { s.AutoAssign = &no }, "198.51.100.20/30")
		cl.pool("order-zz", "order", nil, "198.51.100.24/30")
		cl.pool("order-prio", "order", func(s *barelbv1beta1.IPAddressPoolSpec) { s.ServiceAllocation.Priority = 5 }, "198.51.100.28/30")
		// Pools the controller has not seen yet cannot be chosen (a CI
		// run allocated from order-zz before order-prio was in its cache).
		cl.waitPoolsInForce("order-manual", "order-zz", "order-prio")
		cl.service("order", "auto", nil)
		cl.waitIPs("order", "auto", "198.51.100.28")
		cl.service("order", "named", annotate(config.AnnotationAddressPool, "order-manual"))
		cl.waitIPs("order", "named", "198.51.100.20")
		cl.service("order", "metallb-named", annotate("metallb.universe.tf/address-pool", "order-zz"))
		cl.waitIPs("order", "metallb-named", "198.51.100.24")
		cl.service("order", "missing", annotate(config.AnnotationAddressPool, "no-such-pool"))
		cl.waitEvent("order", "missing", ReasonUnknownPool, "no-such-pool")
	})

	t.Run("requested addresses", func(t *testing.T) {
		cl.t = t
		cl.createNamespace("req", nil)
		no := false
		cl.pool("req", "req", func(s *barelbv1beta1.IPAddressPoolSpec) { s.AutoAssign = &no }, "198.51.100.32/29", "2001:db8:1::/120")
		cl.service("req", "annotated", annotate(config.AnnotationLoadBalancerIPs, "198.51.100.37"))
		cl.waitIPs("req", "annotated", "198.51.100.37")
		cl.service("req", "legacy", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "198.51.100.38" })
		cl.waitIPs("req", "legacy", "198.51.100.38")
		cl.service("req", "metallb", annotate("metallb.io/loadBalancerIPs", "198.51.100.39"))
		cl.waitIPs("req", "metallb", "198.51.100.39")

		cl.service("req", "taken", annotate(config.AnnotationLoadBalancerIPs, "198.51.100.37"))
		cl.waitEvent("req", "taken", ReasonAddressInUse, "198.51.100.37", "req/annotated")
		cl.stayPending("req", "taken")

		cl.service("req", "outside", annotate(config.AnnotationLoadBalancerIPs, "203.0.113.250"))
		cl.waitEvent("req", "outside", ReasonAddressNotInPool, "203.0.113.250")

		cl.service("req", "dual", func(s *corev1.Service) {
			s.Spec.IPFamilyPolicy = policy(corev1.IPFamilyPolicyRequireDualStack)
			s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
			annotate(config.AnnotationLoadBalancerIPs, "198.51.100.33,2001:db8:1::33")(s)
		})
		cl.waitIPs("req", "dual", "2001:db8:1::33", "198.51.100.33")

		cl.service("req", "bad", annotate(config.AnnotationLoadBalancerIPs, "not-an-ip"))
		cl.waitEvent("req", "bad", ReasonInvalidRequest, `"not-an-ip" is not an IP address`)

		// Several addresses of one family (Cilium allows it): refused
		// with the reason, and the Service gets none of them.
		cl.service("req", "several", annotate(config.AnnotationLoadBalancerIPs, "198.51.100.40, 198.51.100.41"))
		cl.waitEvent("req", "several", ReasonInvalidRequest, "two IPv4 addresses (198.51.100.40 and 198.51.100.41): barelb gives a Service one address per IP family")
		cl.waitIPs("req", "several")
	})

	t.Run("dual stack", func(t *testing.T) {
		cl.t = t
		cl.createNamespace("dual", nil)
		cl.pool("dual-v4", "dual", nil, "198.51.100.40/30")
		cl.pool("dual-v6", "dual", nil, "2001:db8:2::/126")
		cl.service("dual", "both", func(s *corev1.Service) {
			s.Spec.IPFamilyPolicy = policy(corev1.IPFamilyPolicyRequireDualStack)
			s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
		})
		cl.waitIPs("dual", "both", "198.51.100.40", "2001:db8:2::")
		cl.service("dual", "v6", func(s *corev1.Service) { s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol} })
		cl.waitIPs("dual", "v6", "2001:db8:2::1")

		// Only IPv4 left in a pool this namespace may use: PreferDualStack
		// takes what it can get, RequireDualStack gets nothing.
		cl.createNamespace("dual4", nil)
		cl.pool("dual4", "dual4", nil, "198.51.100.44/30")
		cl.service("dual4", "prefer", func(s *corev1.Service) {
			s.Spec.IPFamilyPolicy = policy(corev1.IPFamilyPolicyPreferDualStack)
			s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
		})
		cl.waitIPs("dual4", "prefer", "198.51.100.44")
		cl.service("dual4", "require", func(s *corev1.Service) {
			s.Spec.IPFamilyPolicy = policy(corev1.IPFamilyPolicyRequireDualStack)
			s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
		})
		cl.waitEvent("dual4", "require", ReasonFamilyUnavailable, "IPv6")
		cl.stayPending("dual4", "require")
	})

	t.Run("sharing an address", func(t *testing.T) {
		cl.t = t
		cl.createNamespace("share", nil)
		cl.pool("share", "share", nil, "198.51.100.48/30")
		cl.service("share", "http", annotate(config.AnnotationAllowSharedIP, "front"))
		cl.waitIPs("share", "http", "198.51.100.48")
		cl.service("share", "dns", func(s *corev1.Service) {
			annotate("metallb.universe.tf/allow-shared-ip", "front")(s)
			s.Spec.Ports = []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}
		})
		cl.waitIPs("share", "dns", "198.51.100.48")
		cl.service("share", "clash", func(s *corev1.Service) {
			annotate(config.AnnotationAllowSharedIP, "front", config.AnnotationLoadBalancerIPs, "198.51.100.48")(s)
		})
		cl.waitEvent("share", "clash", ReasonAddressInUse, "198.51.100.48", "80/TCP")
		cl.service("share", "local", func(s *corev1.Service) {
			annotate(config.AnnotationAllowSharedIP, "front", config.AnnotationLoadBalancerIPs, "198.51.100.48")(s)
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			s.Spec.Ports = []corev1.ServicePort{{Name: "x", Port: 8443, Protocol: corev1.ProtocolTCP}}
		})
		// A Local Service with other backends shares too: the speakers
		// announce from nodes holding endpoints of every Local Service.
		cl.waitIPs("share", "local", "198.51.100.48")
		cl.service("share", "unshared", nil)
		cl.waitIPs("share", "unshared", "198.51.100.49")
		// Dropping the sharing key ends the sharing: the Service moves.
		cl.updateService("share", "dns", func(s *corev1.Service) {
			delete(s.Annotations, "metallb.universe.tf/allow-shared-ip")
		})
		cl.waitIPs("share", "dns", "198.51.100.50")
		cl.waitIPs("share", "http", "198.51.100.48")
	})

	t.Run("avoidBuggyIPs skips .0 and .255", func(t *testing.T) {
		cl.t = t
		cl.createNamespace("buggy", nil)
		cl.pool("buggy", "buggy", func(s *barelbv1beta1.IPAddressPoolSpec) { s.AvoidBuggyIPs = true }, "203.0.112.255-203.0.113.1")
		cl.service("buggy", "a", nil)
		cl.waitIPs("buggy", "a", "203.0.113.1")
	})

	t.Run("addresses stay put across restarts and pool edits that keep them", func(t *testing.T) {
		cl.t = t
		cl.createNamespace("stable", nil)
		cl.pool("stable", "stable", nil, "198.51.100.64/28")
		for i := 0; i < 4; i++ {
			cl.service("stable", fmt.Sprintf("s%d", i), nil)
			cl.waitIPs("stable", fmt.Sprintf("s%d", i), fmt.Sprintf("198.51.100.%d", 64+i))
		}
		// Free the first address: after a restart, the lowest free address
		// goes to a new Service and nobody else moves.
		if err := cl.c.Delete(ctx, cl.get("stable", "s0")); err != nil {
			t.Fatal(err)
		}
		cl.restartController()
		cl.service("stable", "late", nil)
		cl.waitIPs("stable", "late", "198.51.100.64")
		// Growing the pool and adding a range keeps every address.
		cl.updatePool("stable", func(s *barelbv1beta1.IPAddressPoolSpec) {
			s.Addresses = []barelbv1beta1.AddressRange{"198.51.100.60-198.51.100.79", "2001:db8:3::/120"}
		})
		cl.restartController()
		for i := 1; i < 4; i++ {
			cl.waitIPs("stable", fmt.Sprintf("s%d", i), fmt.Sprintf("198.51.100.%d", 64+i))
		}
		cl.waitIPs("stable", "late", "198.51.100.64")

		// An edit that drops s3's address moves s3 only, and says so.
		cl.updatePool("stable", func(s *barelbv1beta1.IPAddressPoolSpec) {
			s.Addresses = []barelbv1beta1.AddressRange{"198.51.100.60-198.51.100.66"}
		})
		cl.waitIPs("stable", "s3", "198.51.100.60")
		cl.waitEvent("stable", "s3", ReasonMoved, "198.51.100.67", "198.51.100.60")
		for i := 1; i < 3; i++ {
			cl.waitIPs("stable", fmt.Sprintf("s%d", i), fmt.Sprintf("198.51.100.%d", 64+i))
		}
	})

	t.Run("two Services claiming one address: the older keeps it", func(t *testing.T) {
		cl.t = t
		cl.createNamespace("dup", nil)
		cl.pool("dup", "dup", nil, "198.51.100.80/30")
		cl.service("dup", "old", nil)
		cl.waitIPs("dup", "old", "198.51.100.80")
		cl.stopController()
		// As after a restore from backup: a newer Service carries the same
		// address in its status.
		young := cl.service("dup", "young", nil)
		young.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.80"}}
		if err := cl.c.Status().Update(ctx, young); err != nil {
			t.Fatal(err)
		}
		cl.startController()
		cl.waitIPs("dup", "young", "198.51.100.81")
		cl.waitIPs("dup", "old", "198.51.100.80")
	})

	t.Run("pools report their usage and overlaps", func(t *testing.T) {
		cl.t = t
		cl.createNamespace("stats", nil)
		cl.pool("stats-a", "stats", nil, "198.51.100.96/29", "2001:db8:4::/64")
		cl.pool("stats-b", "stats", func(s *barelbv1beta1.IPAddressPoolSpec) { s.AutoAssign = new(bool) }, "198.51.100.100-198.51.100.110")
		cl.service("stats", "one", nil)
		cl.waitIPs("stats", "one", "198.51.100.96")
		cl.service("stats", "two", func(s *corev1.Service) { s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol} })
		cl.waitIPs("stats", "two", "2001:db8:4::")
		cl.eventually("status of stats-a", func() string {
			var p barelbv1beta1.IPAddressPool
			if err := cl.c.Get(ctx, types.NamespacedName{Namespace: barelbNamespace, Name: "stats-a"}, &p); err != nil {
				return err.Error()
			}
			s := p.Status
			if s.AssignedIPv4 != 1 || s.AvailableIPv4 != 7 || s.AssignedIPv6 != 1 || s.AvailableIPv6 <= 1<<62 {
				return fmt.Sprintf("counts %+v", s)
			}
			c := meta.FindStatusCondition(s.Conditions, ConditionOverlapping)
			if c == nil || c.Status != metav1.ConditionTrue || c.Message == "" {
				return fmt.Sprintf("overlap condition %+v", c)
			}
			return ""
		})
	})

	t.Run("pools outside barelb's namespace are ignored and say so", func(t *testing.T) {
		cl.t = t
		cl.createNamespace("elsewhere", nil)
		p := &barelbv1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: "stray", Namespace: "elsewhere"}}
		p.Spec.Addresses = []barelbv1beta1.AddressRange{"198.51.100.120/29"}
		if err := cl.c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		cl.service("elsewhere", "svc", nil)
		cl.waitEvent("elsewhere", "svc", ReasonNoPoolAdmits)
		cl.eventually("condition of the stray pool", func() string {
			var got barelbv1beta1.IPAddressPool
			if err := cl.c.Get(ctx, types.NamespacedName{Namespace: "elsewhere", Name: "stray"}, &got); err != nil {
				return err.Error()
			}
			c := meta.FindStatusCondition(got.Status.Conditions, ConditionValid)
			if c == nil || c.Reason != "WrongNamespace" {
				return fmt.Sprintf("condition %+v", c)
			}
			return ""
		})
	})

	t.Run("a freed address goes to a Service that was waiting for one", func(t *testing.T) {
		cl.t = t
		cl.createNamespace("wait", nil)
		cl.pool("wait", "wait", nil, "198.51.100.140/32")
		cl.service("wait", "first", nil)
		cl.waitIPs("wait", "first", "198.51.100.140")
		cl.service("wait", "second", nil)
		cl.waitEvent("wait", "second", ReasonPoolExhausted)
		if err := cl.c.Delete(ctx, cl.get("wait", "first")); err != nil {
			t.Fatal(err)
		}
		cl.waitIPs("wait", "second", "198.51.100.140")
	})

	t.Run("with --lb-class, only that class is served", func(t *testing.T) {
		cl.t = t
		cl.createNamespace("classed", nil)
		cl.pool("classed", "classed", nil, "198.51.100.144/30")
		cl.stopController()
		cl.lbClass = "example.com/barelb"
		defer func() { cl.lbClass = ""; cl.restartController() }()
		cl.startController()
		class := cl.lbClass
		cl.service("classed", "mine", func(s *corev1.Service) { s.Spec.LoadBalancerClass = &class })
		cl.waitIPs("classed", "mine", "198.51.100.144")
		cl.service("classed", "unclassed", nil)
		cl.stayPending("classed", "unclassed")
	})

	t.Run("namespace and service selectors", func(t *testing.T) {
		cl.t = t
		cl.createNamespace("sel-a", map[string]string{"team": "a"})
		cl.createNamespace("sel-b", map[string]string{"team": "b"})
		cl.pool("sel", "none", func(s *barelbv1beta1.IPAddressPoolSpec) {
			s.ServiceAllocation = &barelbv1beta1.ServiceAllocation{
				NamespaceSelectors: []barelbv1beta1.Selector{{MatchLabels: map[string]barelbv1beta1.LabelValue{"team": "a"}}},
				ServiceSelectors:   []barelbv1beta1.Selector{{MatchLabels: map[string]barelbv1beta1.LabelValue{"exposure": "public"}}},
			}
		}, "198.51.100.128/30")
		public := func(s *corev1.Service) { s.Labels = map[string]string{"exposure": "public"} }
		cl.service("sel-a", "public", public)
		cl.waitIPs("sel-a", "public", "198.51.100.128")
		cl.service("sel-a", "private", nil)
		cl.waitEvent("sel-a", "private", ReasonNoPoolAdmits)
		cl.service("sel-b", "public", public)
		cl.waitEvent("sel-b", "public", ReasonNoPoolAdmits)
		// Relabelling the namespace lets its Service in.
		var ns corev1.Namespace
		if err := cl.c.Get(ctx, types.NamespacedName{Name: "sel-b"}, &ns); err != nil {
			t.Fatal(err)
		}
		ns.Labels["team"] = "a"
		if err := cl.c.Update(ctx, &ns); err != nil {
			t.Fatal(err)
		}
		cl.waitIPs("sel-b", "public", "198.51.100.129")
	})
}
