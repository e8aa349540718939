package allocation

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
	"github.com/barelb/barelb/internal/k8s/servicecondition"
)

func TestAddressCondition(t *testing.T) {
	v4, v6 := netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("2001:db8::1")
	for _, tc := range []struct {
		name  string
		addrs []netip.Addr
		f     *failure
		want  servicecondition.Want
	}{
		{"assigned", []netip.Addr{v4, v6}, nil, servicecondition.Want{Status: metav1.ConditionTrue, Reason: "IPAllocated", Message: "assigned 203.0.113.1, 2001:db8::1 from pool p"}},
		{"no pool admits", nil, fail(ReasonNoPoolAdmits, "no IPAddressPool with autoAssign admits this Service"),
			servicecondition.Want{Status: metav1.ConditionFalse, Reason: "NoPoolAdmits", Message: "no IPAddressPool with autoAssign admits this Service"}},
		{"exhausted", nil, fail(ReasonPoolExhausted, "every pool this Service may use is out of IPv4 addresses"),
			servicecondition.Want{Status: metav1.ConditionFalse, Reason: "PoolExhausted", Message: "every pool this Service may use is out of IPv4 addresses"}},
		{"one family of a PreferDualStack Service", []netip.Addr{v4}, fail(ReasonFamilyUnavailable, "no pool this Service may use has IPv6 addresses"),
			servicecondition.Want{Status: metav1.ConditionTrue, Reason: "IPAllocatedPartially", Message: "assigned 203.0.113.1 from pool p; the other family: FamilyUnavailable: no pool this Service may use has IPv6 addresses"}},
		{"an unreadable request keeps its address", []netip.Addr{v4}, fail(ReasonInvalidRequest, "bad annotation"),
			servicecondition.Want{Status: metav1.ConditionFalse, Reason: "InvalidRequest", Message: "bad annotation; it keeps 203.0.113.1 (pool p) meanwhile"}},
		{"no family", nil, nil, servicecondition.Want{Status: metav1.ConditionFalse, Reason: "InvalidRequest", Message: "the Service asks for no address family"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, addressCondition(tc.addrs, "p", tc.f)); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

// waitCondition waits until the Service's condition of type typ has the
// status and reason, and its message contains every fragment.
func (cl *cluster) waitCondition(ns, name, typ string, status metav1.ConditionStatus, reason string, fragments ...string) *corev1.Service {
	cl.t.Helper()
	var svc *corev1.Service
	cl.eventually(fmt.Sprintf("condition %s of %s/%s", typ, ns, name), func() string {
		svc = cl.get(ns, name)
		c := servicecondition.Find(svc, typ)
		if c == nil {
			return fmt.Sprintf("no condition %s in %+v", typ, svc.Status.Conditions)
		}
		if c.Status != status || c.Reason != reason {
			return fmt.Sprintf("got %s %s %q, want %s %s", c.Status, c.Reason, c.Message, status, reason)
		}
		for _, f := range fragments {
			if !strings.Contains(c.Message, f) {
				return fmt.Sprintf("message %q lacks %q", c.Message, f)
			}
		}
		if c.ObservedGeneration != svc.Generation {
			return fmt.Sprintf("observedGeneration %d, generation %d", c.ObservedGeneration, svc.Generation)
		}
		return ""
	})
	return svc
}

func TestAddressAssignedCondition(t *testing.T) {
	cl := startCluster(t, 1)
	ctx := context.Background()
	typ := barelbv1beta1.ConditionAddressAssigned

	t.Run("True with the address and pool", func(t *testing.T) {
		cl.t = t
		cl.createNamespace("cond-ok", nil)
		cl.pool("cond-ok", "cond-ok", nil, "203.0.113.16/30")
		cl.service("cond-ok", "web", nil)
		cl.waitCondition("cond-ok", "web", typ, metav1.ConditionTrue, "IPAllocated", "203.0.113.16", "pool cond-ok")
	})

	t.Run("NoPoolAdmits", func(t *testing.T) {
		cl.t = t
		cl.createNamespace("cond-nopool", nil)
		cl.service("cond-nopool", "web", nil)
		cl.waitCondition("cond-nopool", "web", typ, metav1.ConditionFalse, ReasonNoPoolAdmits, "no IPAddressPool")
	})

	t.Run("PoolExhausted, then True once an address is freed", func(t *testing.T) {
		cl.t = t
		cl.createNamespace("cond-full", nil)
		cl.pool("cond-full", "cond-full", nil, "203.0.113.20/32")
		cl.service("cond-full", "a", nil)
		cl.waitIPs("cond-full", "a", "203.0.113.20")
		cl.service("cond-full", "b", nil)
		pending := cl.waitCondition("cond-full", "b", typ, metav1.ConditionFalse, ReasonPoolExhausted, "out of IPv4 addresses")
		since := servicecondition.Find(pending, typ).LastTransitionTime
		if err := cl.c.Delete(ctx, cl.get("cond-full", "a")); err != nil {
			t.Fatal(err)
		}
		got := cl.waitCondition("cond-full", "b", typ, metav1.ConditionTrue, "IPAllocated", "203.0.113.20")
		if c := servicecondition.Find(got, typ); c.LastTransitionTime.Before(&since) {
			t.Errorf("lastTransitionTime %v went back from %v", c.LastTransitionTime, since)
		}
	})

	t.Run("AddressInUse", func(t *testing.T) {
		cl.t = t
		cl.createNamespace("cond-inuse", nil)
		cl.pool("cond-inuse", "cond-inuse", nil, "203.0.113.24/30")
		cl.service("cond-inuse", "first", annotate(config.AnnotationLoadBalancerIPs, "203.0.113.25"))
		cl.waitIPs("cond-inuse", "first", "203.0.113.25")
		cl.service("cond-inuse", "second", annotate(config.AnnotationLoadBalancerIPs, "203.0.113.25"))
		cl.waitCondition("cond-inuse", "second", typ, metav1.ConditionFalse, ReasonAddressInUse, "203.0.113.25", "cond-inuse/first")
	})

	t.Run("InvalidRequest keeps the address and says so", func(t *testing.T) {
		cl.t = t
		cl.createNamespace("cond-invalid", nil)
		cl.pool("cond-invalid", "cond-invalid", nil, "203.0.113.28/30")
		cl.service("cond-invalid", "web", nil)
		cl.waitIPs("cond-invalid", "web", "203.0.113.28")
		cl.updateService("cond-invalid", "web", annotate(config.AnnotationLoadBalancerIPs, "not-an-address"))
		cl.waitCondition("cond-invalid", "web", typ, metav1.ConditionFalse, ReasonInvalidRequest, "it keeps 203.0.113.28")
		cl.waitIPs("cond-invalid", "web", "203.0.113.28")
	})

	t.Run("two writers: neither clobbers the other's condition nor the addresses", func(t *testing.T) {
		cl.t = t
		cl.createNamespace("cond-two", nil)
		cl.pool("cond-two", "cond-two", nil, "203.0.113.32/30")
		cl.service("cond-two", "web", nil)
		cl.waitCondition("cond-two", "web", typ, metav1.ConditionTrue, "IPAllocated", "203.0.113.32")
		// The other writer sets its condition through the same helper
		// the announcement reconciler uses, and a third party its own.
		other := servicecondition.Want{Status: metav1.ConditionFalse, Reason: barelbv1beta1.AnnouncedReasonPending, Message: "from the other writer"}
		if _, err := servicecondition.Write(ctx, cl.c, cl.get("cond-two", "web"), barelbv1beta1.ConditionAnnounced, &other, time.Now()); err != nil {
			t.Fatal(err)
		}
		third := servicecondition.Want{Status: metav1.ConditionTrue, Reason: "Fine", Message: "someone else's"}
		if _, err := servicecondition.Write(ctx, cl.c, cl.get("cond-two", "web"), "example.com/Other", &third, time.Now()); err != nil {
			t.Fatal(err)
		}
		// Now the allocation changes: the controller rewrites addresses and
		// its condition.
		cl.updateService("cond-two", "web", annotate(config.AnnotationLoadBalancerIPs, "203.0.113.34"))
		svc := cl.waitCondition("cond-two", "web", typ, metav1.ConditionTrue, "IPAllocated", "203.0.113.34")
		cl.waitIPs("cond-two", "web", "203.0.113.34")
		for _, want := range []struct {
			typ string
			w   servicecondition.Want
		}{{barelbv1beta1.ConditionAnnounced, other}, {"example.com/Other", third}} {
			c := servicecondition.Find(svc, want.typ)
			if c == nil || c.Reason != want.w.Reason || c.Message != want.w.Message {
				t.Errorf("condition %s after the controller's write: %+v, want %+v", want.typ, c, want.w)
			}
		}
		// And the other writer's write leaves the controller's alone.
		other.Message = "changed"
		if _, err := servicecondition.Write(ctx, cl.c, svc, barelbv1beta1.ConditionAnnounced, &other, time.Now()); err != nil {
			t.Fatal(err)
		}
		svc = cl.get("cond-two", "web")
		if c := servicecondition.Find(svc, typ); c == nil || c.Reason != "IPAllocated" {
			t.Errorf("AddressAssigned after the other writer's write: %+v", c)
		}
		if got := ips(svc); len(got) != 1 || got[0] != "203.0.113.34" {
			t.Errorf("addresses after the other writer's write: %v", got)
		}
	})

	t.Run("no writes on resync or restart", func(t *testing.T) {
		cl.t = t
		cl.createNamespace("cond-quiet", nil)
		cl.pool("cond-quiet", "cond-quiet", nil, "203.0.113.36/30")
		cl.service("cond-quiet", "web", nil)
		before := cl.waitCondition("cond-quiet", "web", typ, metav1.ConditionTrue, "IPAllocated").ResourceVersion
		cl.restartController()
		// A later Service in the same namespace is reconciled after the
		// restart's first pass over every Service.
		cl.service("cond-quiet", "later", nil)
		cl.waitCondition("cond-quiet", "later", typ, metav1.ConditionTrue, "IPAllocated")
		time.Sleep(300 * time.Millisecond)
		if after := cl.get("cond-quiet", "web").ResourceVersion; after != before {
			t.Errorf("the Service was written on restart: resourceVersion %s → %s", before, after)
		}
	})

	t.Run("the condition goes when barelb stops serving the Service", func(t *testing.T) {
		cl.t = t
		cl.createNamespace("cond-gone", nil)
		cl.pool("cond-gone", "cond-gone", nil, "203.0.113.40/30")
		cl.service("cond-gone", "web", nil)
		cl.waitCondition("cond-gone", "web", typ, metav1.ConditionTrue, "IPAllocated")
		cl.updateService("cond-gone", "web", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeClusterIP
			s.Spec.AllocateLoadBalancerNodePorts = nil
		})
		cl.eventually("condition removed", func() string {
			if c := servicecondition.Find(cl.get("cond-gone", "web"), typ); c != nil {
				return fmt.Sprintf("still %+v", c)
			}
			return ""
		})
	})
}
