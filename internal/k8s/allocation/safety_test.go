package allocation

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

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
			return func(s *corev1.Service) {
				s.Spec.Ports = []corev1.ServicePort{{Name: "x", Port: p, Protocol: corev1.ProtocolTCP}}
			}
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

	t.Run("a second writer's status and pool annotation are rewritten even when an annotation is invalid", func(t *testing.T) {
		cl.t = t
		cl.createNamespace("forge", nil)
		cl.pool("forge", "forge", nil, "198.51.100.168/29")
		cl.pool("forge-other", "forge", nil, "198.51.100.176/29")
		cl.service("forge", "web", nil)
		cl.waitIPs("forge", "web", "198.51.100.168")
		cl.updateService("forge", "web", annotate(config.AnnotationLoadBalancerIPs, "not-an-ip"))
		cl.waitEvent("forge", "web", ReasonInvalidRequest, "not-an-ip")
		// A second writer points the status at a node's address and names
		// a pool the speakers would announce it from.
		cl.forgeStatus("forge", "web", "forge-other", "198.51.100.11")
		cl.waitIPs("forge", "web", "198.51.100.168")
		cl.eventually("pool annotation rewritten", func() string {
			if p := cl.get("forge", "web").Annotations[config.AnnotationAllocatedFromPool]; p != "forge" {
				return "pool annotation " + p
			}
			return ""
		})
	})

	t.Run("a broken annotation never breaks sharing, across restarts", func(t *testing.T) {
		cl.t = t
		cl.createNamespace("broken", nil)
		cl.pool("broken", "broken", nil, "198.51.100.184/29")
		port := func(p int32, proto corev1.Protocol) func(*corev1.Service) {
			return func(s *corev1.Service) { s.Spec.Ports = []corev1.ServicePort{{Name: "x", Port: p, Protocol: proto}} }
		}
		// The older of two partners gets a broken sharing annotation (two
		// spellings disagree), then the controller restarts.
		cl.service("broken", "older", annotate(config.AnnotationAllowSharedIP, "k"))
		cl.waitIPs("broken", "older", "198.51.100.184")
		cl.service("broken", "younger", func(s *corev1.Service) {
			annotate(config.AnnotationAllowSharedIP, "k")(s)
			port(53, corev1.ProtocolUDP)(s)
		})
		cl.waitIPs("broken", "younger", "198.51.100.184")
		cl.updateService("broken", "older", annotate("metallb.io/allow-shared-ip", "other"))
		cl.waitEvent("broken", "older", ReasonInvalidRequest, "disagree")
		cl.restartController()

		// A newcomer proves the controller has loaded and reconciled;
		// it may not join a holder whose rules cannot be read.
		cl.service("broken", "newcomer", func(s *corev1.Service) {
			annotate(config.AnnotationAllowSharedIP, "k")(s)
			port(443, corev1.ProtocolTCP)(s)
		})
		cl.waitIPs("broken", "newcomer", "198.51.100.185")
		cl.stay("broken", "older", "198.51.100.184")
		cl.stay("broken", "younger", "198.51.100.184")

		// Now the younger partner is the broken one, and the older leaves:
		// the address still held by the broken Service is not handed out.
		cl.updateService("broken", "older", func(s *corev1.Service) { delete(s.Annotations, "metallb.io/allow-shared-ip") })
		cl.updateService("broken", "younger", annotate("metallb.io/allow-shared-ip", "other"))
		cl.waitEvent("broken", "younger", ReasonInvalidRequest, "disagree")
		cl.restartController()
		if err := cl.c.Delete(context.Background(), cl.get("broken", "older")); err != nil {
			t.Fatal(err)
		}
		cl.service("broken", "third", nil)
		cl.waitIPs("broken", "third", "198.51.100.186")
		cl.stay("broken", "younger", "198.51.100.184")

		// Fixed, it is judged again, and keeps its address.
		cl.updateService("broken", "younger", func(s *corev1.Service) { delete(s.Annotations, "metallb.io/allow-shared-ip") })
		cl.stay("broken", "younger", "198.51.100.184")
	})

	t.Run("an invalid pool edit costs nothing, also across a restart", func(t *testing.T) {
		cl.t = t
		cl.createNamespace("edit", nil)
		cl.pool("edit", "edit", nil, "198.51.100.192/29")
		cl.pool("edit-other", "edit", nil, "198.51.100.200/29")
		cl.service("edit", "s0", nil)
		cl.waitIPs("edit", "s0", "198.51.100.192")
		cl.service("edit", "s1", nil)
		cl.waitIPs("edit", "s1", "198.51.100.193")

		// The webhook is not running, as when it is down (failurePolicy
		// Ignore): an edit it would refuse reaches the controller.
		cl.updatePool("edit", func(s *barelbv1beta1.IPAddressPoolSpec) {
			s.Addresses = []barelbv1beta1.AddressRange{"198.51.100.200/30"}
		})
		cl.stay("edit", "s0", "198.51.100.192")
		cl.stay("edit", "s1", "198.51.100.193")
		cl.waitPoolRefused("edit", `overlap IPAddressPool "edit-other"`, "198.51.100.192/29")
		cl.waitPoolEvent("edit", ReasonPoolInvalid, `overlap IPAddressPool "edit-other"`)
		// The last valid definition still hands out addresses.
		cl.service("edit", "s2", nil)
		cl.waitIPs("edit", "s2", "198.51.100.194")

		// A duplicated block, the same.
		cl.updatePool("edit", func(s *barelbv1beta1.IPAddressPoolSpec) {
			s.Addresses = []barelbv1beta1.AddressRange{"198.51.100.192/29", "198.51.100.192/30"}
		})
		cl.waitPoolRefused("edit", "overlap", "198.51.100.192/29")

		// A restarted controller still knows the last valid definition.
		cl.restartController()
		cl.service("edit", "s3", nil)
		cl.waitIPs("edit", "s3", "198.51.100.195")
		for i, ip := range []string{"198.51.100.192", "198.51.100.193", "198.51.100.194"} {
			cl.stay("edit", fmt.Sprintf("s%d", i), ip)
		}
		cl.waitPoolRefused("edit", "overlap", "198.51.100.192/29")

		// Fixed, the edit applies.
		cl.updatePool("edit", func(s *barelbv1beta1.IPAddressPoolSpec) {
			s.Addresses = []barelbv1beta1.AddressRange{"198.51.100.192/29", "198.51.100.208/30"}
		})
		cl.eventually("the fixed pool in use", func() string {
			p := cl.getPool("edit")
			c := meta.FindStatusCondition(p.Status.Conditions, ConditionValid)
			if c == nil || c.Status != metav1.ConditionTrue || !slices.Equal(p.Status.AddressesInForce, []string{"198.51.100.192/29", "198.51.100.208/30"}) {
				return fmt.Sprintf("condition %+v, in force %v", c, p.Status.AddressesInForce)
			}
			return ""
		})
	})

	t.Run("after a restart, Services of a pool with no known valid definition keep their addresses", func(t *testing.T) {
		cl.t = t
		cl.createNamespace("frozen", nil)
		cl.pool("frozen", "frozen", nil, "198.51.100.216/29")
		cl.service("frozen", "f0", nil)
		cl.waitIPs("frozen", "f0", "198.51.100.216")
		cl.stopController()
		// The pool is broken while the controller is down, and its status
		// holds no addresses in force (as written by an older version).
		cl.updatePool("frozen", func(s *barelbv1beta1.IPAddressPoolSpec) {
			s.Addresses = []barelbv1beta1.AddressRange{"198.51.100.216/29", "198.51.100.220/30"}
		})
		p := cl.getPool("frozen")
		p.Status.AddressesInForce = nil
		if err := cl.c.Status().Update(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		cl.startController()
		cl.service("frozen", "f1", nil)
		cl.waitEvent("frozen", "f1", ReasonNoPoolAdmits)
		cl.stay("frozen", "f0", "198.51.100.216")
		cl.waitPoolRefused("frozen", "knows no valid definition")
		if got := cl.get("frozen", "f0").Annotations[config.AnnotationAllocatedFromPool]; got != "frozen" {
			t.Errorf("pool annotation %q, want frozen", got)
		}
	})
}

func (cl *cluster) getPool(name string) *barelbv1beta1.IPAddressPool {
	cl.t.Helper()
	var p barelbv1beta1.IPAddressPool
	if err := cl.c.Get(context.Background(), types.NamespacedName{Namespace: barelbNamespace, Name: name}, &p); err != nil {
		cl.t.Fatalf("reading pool %s: %v", name, err)
	}
	return &p
}

// waitPoolRefused waits until the pool's Valid condition is False for its
// current spec with a message containing fragment, and its addresses in
// force are inForce.
func (cl *cluster) waitPoolRefused(name, fragment string, inForce ...string) {
	cl.t.Helper()
	cl.eventually("pool "+name+" refused", func() string {
		p := cl.getPool(name)
		c := meta.FindStatusCondition(p.Status.Conditions, ConditionValid)
		if c == nil || c.Status != metav1.ConditionFalse || c.ObservedGeneration != p.Generation || !strings.Contains(c.Message, fragment) {
			return fmt.Sprintf("condition %+v", c)
		}
		if !slices.Equal(p.Status.AddressesInForce, inForce) {
			return fmt.Sprintf("addresses in force %v, want %v", p.Status.AddressesInForce, inForce)
		}
		return ""
	})
}

// waitPoolEvent waits for an Event on the pool with the reason whose
// message contains fragment.
func (cl *cluster) waitPoolEvent(name, reason, fragment string) {
	cl.t.Helper()
	cl.eventually("event "+reason+" on pool "+name, func() string {
		var events corev1.EventList
		if err := cl.c.List(context.Background(), &events, client.InNamespace(barelbNamespace)); err != nil {
			return err.Error()
		}
		for _, e := range events.Items {
			if e.InvolvedObject.Kind == "IPAddressPool" && e.InvolvedObject.Name == name && e.Reason == reason && e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, fragment) {
				return ""
			}
		}
		return "not seen"
	})
}

// forgeStatus writes a Service's status and pool annotation as a second
// writer would (a user, another load-balancer implementation).
func (cl *cluster) forgeStatus(ns, name, pool string, ips ...string) {
	cl.t.Helper()
	ingress := make([]corev1.LoadBalancerIngress, len(ips))
	for i, ip := range ips {
		ingress[i] = corev1.LoadBalancerIngress{IP: ip}
	}
	data, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"annotations": map[string]any{config.AnnotationAllocatedFromPool: pool}},
		"status":   map[string]any{"loadBalancer": map[string]any{"ingress": ingress}},
	})
	if err != nil {
		cl.t.Fatal(err)
	}
	svc := &corev1.Service{}
	svc.Namespace, svc.Name = ns, name
	if err := cl.c.Status().Patch(context.Background(), svc, client.RawPatch(types.MergePatchType, data)); err != nil {
		cl.t.Fatalf("forging the status of %s/%s: %v", ns, name, err)
	}
}

// stay checks that a Service keeps exactly these addresses for a while.
func (cl *cluster) stay(ns, name string, want ...string) {
	cl.t.Helper()
	cl.waitIPs(ns, name, want...)
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if got := ips(cl.get(ns, name)); !slices.Equal(got, want) {
			cl.t.Fatalf("%s/%s moved to %v, want it to stay at %v", ns, name, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
