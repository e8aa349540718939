package allocation

import (
	"context"
	"fmt"
	"math/rand"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
)

// TestChurn creates, edits and deletes Services and pools at random while
// two controller replicas elect a leader and are restarted several times.
// At the end: no address is held by two Services except through allowed
// sharing, every Service that can be served has an address, and pool
// counts match what Services hold. BARELB_CHURN_SEED replays a run.
func TestChurn(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an API server")
	}
	seed := time.Now().UnixNano()
	if s, err := strconv.ParseInt(os.Getenv("BARELB_CHURN_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("seed %d (BARELB_CHURN_SEED=%d replays this run)", seed, seed)
	rng := rand.New(rand.NewSource(seed))
	replicas := 2
	if n, err := strconv.Atoi(os.Getenv("BARELB_CHURN_REPLICAS")); err == nil && n > 0 {
		replicas = n
	}
	cl := startCluster(t, replicas)
	ctx := context.Background()
	const ns = "churn"
	cl.createNamespace(ns, nil)

	pools := []string{"churn-a", "churn-b", "churn-c"}
	randomRanges := func() []barelbv1beta1.AddressRange {
		base := rng.Intn(48)
		v4 := fmt.Sprintf("198.51.100.%d-198.51.100.%d", base, base+rng.Intn(10))
		if rng.Intn(2) == 0 {
			return []barelbv1beta1.AddressRange{barelbv1beta1.AddressRange(v4)}
		}
		b6 := rng.Intn(48)
		v6 := fmt.Sprintf("2001:db8:9::%x-2001:db8:9::%x", b6, b6+rng.Intn(6))
		return []barelbv1beta1.AddressRange{barelbv1beta1.AddressRange(v4), barelbv1beta1.AddressRange(v6)}
	}
	upsertPool := func(name string) {
		var p barelbv1beta1.IPAddressPool
		err := cl.c.Get(ctx, types.NamespacedName{Namespace: barelbNamespace, Name: name}, &p)
		p.Spec.Addresses = randomRanges()
		p.Spec.AvoidBuggyIPs = rng.Intn(4) == 0
		switch {
		case apierrors.IsNotFound(err):
			p.Name, p.Namespace = name, barelbNamespace
			err = cl.c.Create(ctx, &p)
		case err == nil:
			err = cl.c.Update(ctx, &p)
		}
		if err != nil && !apierrors.IsConflict(err) {
			t.Fatalf("pool %s: %v", name, err)
		}
	}
	for _, p := range pools {
		upsertPool(p)
	}

	randomizeService := func(svc *corev1.Service) {
		v4, v6 := corev1.IPv4Protocol, corev1.IPv6Protocol
		switch rng.Intn(4) {
		case 0:
			svc.Spec.IPFamilyPolicy, svc.Spec.IPFamilies = policy(corev1.IPFamilyPolicySingleStack), []corev1.IPFamily{v4}
		case 1:
			svc.Spec.IPFamilyPolicy, svc.Spec.IPFamilies = policy(corev1.IPFamilyPolicySingleStack), []corev1.IPFamily{v6}
		case 2:
			svc.Spec.IPFamilyPolicy, svc.Spec.IPFamilies = policy(corev1.IPFamilyPolicyPreferDualStack), []corev1.IPFamily{v4, v6}
		default:
			svc.Spec.IPFamilyPolicy, svc.Spec.IPFamilies = policy(corev1.IPFamilyPolicyRequireDualStack), []corev1.IPFamily{v6, v4}
		}
		svc.Annotations = map[string]string{}
		if k := rng.Intn(3); k > 0 {
			svc.Annotations[config.AnnotationAllowSharedIP] = fmt.Sprintf("key%d", k)
		}
		if rng.Intn(6) == 0 {
			svc.Annotations[config.AnnotationLoadBalancerIPs] = fmt.Sprintf("198.51.100.%d", rng.Intn(64))
			svc.Spec.IPFamilyPolicy, svc.Spec.IPFamilies = policy(corev1.IPFamilyPolicySingleStack), []corev1.IPFamily{v4}
		}
		ports := []int32{80, 443, 53}
		svc.Spec.Ports = []corev1.ServicePort{{Name: "p", Port: ports[rng.Intn(len(ports))], Protocol: corev1.ProtocolTCP}}
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
		if rng.Intn(4) == 0 {
			svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}
	}

	for op := 0; op < 200; op++ {
		name := fmt.Sprintf("s%02d", rng.Intn(30))
		var svc corev1.Service
		err := cl.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &svc)
		exists := err == nil
		switch r := rng.Intn(100); {
		case r < 5:
			cl.restartOldest()
		case r < 12:
			upsertPool(pools[rng.Intn(len(pools))])
		case r < 15:
			p := &barelbv1beta1.IPAddressPool{ObjectMeta: metav1.ObjectMeta{Name: pools[rng.Intn(len(pools))], Namespace: barelbNamespace}}
			if err := cl.c.Delete(ctx, p); err != nil && !apierrors.IsNotFound(err) {
				t.Fatal(err)
			}
		case !exists:
			svc = corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
			svc.Spec.Type = corev1.ServiceTypeLoadBalancer
			svc.Spec.AllocateLoadBalancerNodePorts = new(bool)
			svc.Spec.Selector = map[string]string{"app": fmt.Sprintf("a%d", rng.Intn(2))}
			randomizeService(&svc)
			if err := cl.c.Create(ctx, &svc); err != nil {
				t.Fatalf("creating %s: %v", name, err)
			}
		case r < 40:
			if err := cl.c.Delete(ctx, &svc); err != nil && !apierrors.IsNotFound(err) {
				t.Fatal(err)
			}
		default:
			// The API server does not let a Service's families change
			// freely; edit everything else.
			fams, pol := svc.Spec.IPFamilies, svc.Spec.IPFamilyPolicy
			randomizeService(&svc)
			svc.Spec.IPFamilies, svc.Spec.IPFamilyPolicy = fams, pol
			if len(fams) != 1 || fams[0] != corev1.IPv4Protocol {
				delete(svc.Annotations, config.AnnotationLoadBalancerIPs)
			}
			if err := cl.c.Update(ctx, &svc); err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
				t.Fatalf("updating %s: %v", name, err)
			}
		}
		time.Sleep(time.Duration(rng.Intn(40)) * time.Millisecond)
	}
	// Every pool exists at the end, so that "could be served" is decided
	// against a stable configuration.
	for _, p := range pools {
		upsertPool(p)
	}

	cl.eventually("invariants after churn", func() string { return checkInvariants(ctx, cl.c, ns) })
}

// checkInvariants returns what is wrong with the cluster's allocations, or
// "" when nothing is.
func checkInvariants(ctx context.Context, c client.Client, ns string) string {
	var services corev1.ServiceList
	if err := c.List(ctx, &services, client.InNamespace(ns)); err != nil {
		return err.Error()
	}
	var poolList barelbv1beta1.IPAddressPoolList
	if err := c.List(ctx, &poolList, client.InNamespace(barelbNamespace)); err != nil {
		return err.Error()
	}
	var pools []*config.Pool
	for i := range poolList.Items {
		if !strings.HasPrefix(poolList.Items[i].Name, "churn-") {
			continue
		}
		// The definitions in force: random edits often make a pool
		// overlap another, and the controller refuses those edits.
		p, err := config.PoolInForce(&poolList.Items[i])
		if err != nil {
			return err.Error()
		}
		pools = append(pools, p)
	}

	holders := map[netip.Addr][]*corev1.Service{}
	for i := range services.Items {
		svc := &services.Items[i]
		for _, ip := range ingressAddresses(svc) {
			holders[ip] = append(holders[ip], svc)
		}
	}
	// 1. No address held twice except by compatible sharers.
	for ip, hs := range holders {
		for i := range hs {
			for j := i + 1; j < len(hs); j++ {
				if why := incompatible(hs[i], hs[j]); why != "" {
					return fmt.Sprintf("%s held by %s and %s: %s", ip, hs[i].Name, hs[j].Name, why)
				}
			}
		}
	}
	// 2. Every address lies in a pool; every Service that asks for no
	// particular address and could get one has one.
	for i := range services.Items {
		svc := &services.Items[i]
		for _, ip := range ingressAddresses(svc) {
			if !inAnyPool(pools, ip) {
				return fmt.Sprintf("%s holds %s (annotation %q), which is in no pool; pools: %s", svc.Name, ip, svc.Annotations[config.AnnotationAllocatedFromPool], describePools(poolList.Items))
			}
		}
		req, err := config.ParseServiceRequest(svc)
		if err != nil || len(req.Addresses) > 0 || req.SharingKey != "" {
			continue // requests and sharing can fail legitimately
		}
		got := map[corev1.IPFamily]bool{}
		for _, ip := range ingressAddresses(svc) {
			got[config.FamilyOf(ip)] = true
		}
		allFree, anyFree := true, false
		for _, fam := range req.Families {
			free := freeAddress(pools, holders, fam)
			allFree, anyFree = allFree && free, anyFree || free
		}
		switch {
		case req.RequireAll && len(got) > 0 && len(got) < len(req.Families):
			return fmt.Sprintf("%s needs all of %v but holds only %v", svc.Name, req.Families, ingressAddresses(svc))
		case req.RequireAll && len(got) == 0 && allFree:
			return fmt.Sprintf("%s has no address although pools have free %v addresses", svc.Name, req.Families)
		case !req.RequireAll && len(got) == 0 && anyFree:
			return fmt.Sprintf("%s has no address although pools have free ones for one of %v", svc.Name, req.Families)
		}
	}
	// 3. Pool counts match what Services hold.
	for i := range poolList.Items {
		p := &poolList.Items[i]
		var cfg *config.Pool
		for _, q := range pools {
			if q.Name == p.Name {
				cfg = q
			}
		}
		if cfg == nil {
			continue
		}
		var v4, v6 int64
		for ip := range holders {
			if cfg.Set.Contains(ip) {
				if ip.Is4() {
					v4++
				} else {
					v6++
				}
			}
		}
		if p.Status.AssignedIPv4 != v4 || p.Status.AssignedIPv6 != v6 {
			return fmt.Sprintf("pool %s says %d+%d assigned, Services hold %d+%d", p.Name, p.Status.AssignedIPv4, p.Status.AssignedIPv6, v4, v6)
		}
	}
	return ""
}

func incompatible(a, b *corev1.Service) string {
	ra, errA := config.ParseServiceRequest(a)
	rb, errB := config.ParseServiceRequest(b)
	if errA != nil || errB != nil {
		return "unparsable request"
	}
	if ra.SharingKey == "" || ra.SharingKey != rb.SharingKey {
		return fmt.Sprintf("sharing keys %q and %q", ra.SharingKey, rb.SharingKey)
	}
	for _, p := range ra.Ports {
		for _, q := range rb.Ports {
			if p == q {
				return fmt.Sprintf("both use %d/%s", p.Port, p.Protocol)
			}
		}
	}
	// Traffic policies and selectors may differ: the announcers hold
	// endpoints of every Local Service on the address.
	return ""
}

func inAnyPool(pools []*config.Pool, ip netip.Addr) bool {
	for _, p := range pools {
		if p.Set.Contains(ip) {
			return true
		}
	}
	return false
}

// freeAddress tells whether some pool has an address of the family that
// nobody holds (and that avoidBuggyIPs allows).
func freeAddress(pools []*config.Pool, holders map[netip.Addr][]*corev1.Service, fam corev1.IPFamily) bool {
	for _, p := range pools {
		for _, r := range p.Ranges {
			if config.FamilyOf(r.From()) != fam {
				continue
			}
			for ip := r.From(); r.Contains(ip); ip = ip.Next() {
				if _, held := holders[ip]; held {
					continue
				}
				if p.AvoidBuggyIPs && ip.Is4() && (ip.As4()[3] == 0 || ip.As4()[3] == 255) {
					continue
				}
				return true
			}
		}
	}
	return false
}

// describePools writes each pool's spec, Valid condition and addresses in
// force, to explain a failed invariant.
func describePools(pools []barelbv1beta1.IPAddressPool) string {
	var parts []string
	for _, p := range pools {
		valid := "no Valid condition"
		if c := meta.FindStatusCondition(p.Status.Conditions, config.PoolConditionValid); c != nil {
			valid = fmt.Sprintf("Valid=%s (generation %d of %d: %s)", c.Status, c.ObservedGeneration, p.Generation, c.Message)
		}
		parts = append(parts, fmt.Sprintf("%s spec %v, %s, in force %v", p.Name, p.Spec.Addresses, valid, p.Status.AddressesInForce))
	}
	return strings.Join(parts, "; ")
}
