package allocation

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/barelb/barelb/internal/allocator"
	"github.com/barelb/barelb/internal/config"
)

// Reasons for a Service's Events and the failure metric's label.
const (
	ReasonAllocated         = "IPAllocated"
	ReasonReleased          = "IPReleased"
	ReasonMoved             = "IPMoved"
	ReasonInvalidRequest    = "InvalidRequest"
	ReasonNoPoolAdmits      = "NoPoolAdmits"
	ReasonUnknownPool       = "UnknownPool"
	ReasonPoolNotAllowed    = "PoolNotAllowed"
	ReasonPoolExhausted     = "PoolExhausted"
	ReasonAddressNotInPool  = "AddressNotInPool"
	ReasonAddressInUse      = "AddressInUse"
	ReasonFamilyUnavailable = "FamilyUnavailable"
)

// failure is why a Service got no address, in words for its owner.
type failure struct {
	Reason  string
	Message string
}

func (f *failure) Error() string { return f.Reason + ": " + f.Message }

func fail(reason, format string, args ...any) *failure {
	return &failure{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// decision is what the controller decided for one Service.
type decision struct {
	// Addresses in the Service's family order; empty means none.
	Addresses []netip.Addr
	// Pool the first address came from.
	Pool string
	// Failure says why some or all families got no address.
	Failure *failure
	// FailureIsNew is set when Failure differs from the Service's last one.
	FailureIsNew bool
}

// serviceFromRequest is what the allocator needs to know of a Service.
func serviceFromRequest(key string, req config.ServiceRequest) allocator.Service {
	svc := allocator.Service{
		Key:               key,
		SharingKey:        req.SharingKey,
		SharingNamespaces: req.SharingNamespaces,
		ClusterTraffic:    req.ClusterTraffic,
		Selector:          req.Selector,
	}
	for _, p := range req.Ports {
		svc.Ports = append(svc.Ports, allocator.Port{Port: p.Port, Protocol: string(p.Protocol)})
	}
	return svc
}

func allocatorFamily(f corev1.IPFamily) allocator.Family {
	if f == corev1.IPv6Protocol {
		return allocator.IPv6
	}
	return allocator.IPv4
}

// decide gives the Service its addresses, changing the allocator's state.
// pools are the pools in force, sorted by config.SortPools. With keepHeld
// (the pool the Service's addresses came from is refused), the addresses
// it holds count as admissible whatever the pools in force say: they are
// kept as long as the sharing rules allow. The caller holds the state's
// lock.
func decide(alloc *allocator.Allocator, pools []*config.Pool, key, ns string, nsLabels, svcLabels labels.Set, req config.ServiceRequest, keepHeld bool) decision {
	svc := serviceFromRequest(key, req)

	// Families the Service no longer wants are let go first.
	for _, held := range alloc.Addresses(key) {
		if !hasFamily(req.Families, config.FamilyOf(held)) {
			alloc.ReleaseFamily(key, allocator.FamilyOf(held))
		}
	}

	var d decision
	if len(req.Addresses) > 0 {
		d = decideRequested(alloc, pools, svc, ns, nsLabels, svcLabels, req, keepHeld)
	} else {
		d = decideAutomatic(alloc, pools, svc, ns, nsLabels, svcLabels, req, keepHeld)
	}
	if len(d.Addresses) > 0 {
		d.Pool = alloc.PoolOf(d.Addresses[0])
	}
	return d
}

func decideRequested(alloc *allocator.Allocator, pools []*config.Pool, svc allocator.Service, ns string, nsLabels, svcLabels labels.Set, req config.ServiceRequest, keepHeld bool) decision {
	var d decision
	for _, family := range req.Families {
		ip := req.Addresses[family]
		kept := keepHeld && slices.Contains(alloc.Addresses(svc.Key), ip)
		if f := checkRequestedAddress(pools, ip, ns, nsLabels, svcLabels, req.Pool); f != nil && !kept {
			d.Failure = f
			break
		}
		if err := alloc.Assign(svc, ip, kept); err != nil {
			d.Failure = failureFromAllocator(err, family)
			break
		}
		d.Addresses = append(d.Addresses, ip)
	}
	if d.Failure != nil && !keepHeld {
		// Requested addresses are all or nothing, unless the Service's
		// pool is refused: then it keeps what it holds.
		alloc.Release(svc.Key)
		d.Addresses = nil
	}
	return d
}

// checkRequestedAddress finds a pool that may give ip to the Service: the
// requested pool if there is one, otherwise any pool containing ip that
// admits the Service, automatic assignment or not.
func checkRequestedAddress(pools []*config.Pool, ip netip.Addr, ns string, nsLabels, svcLabels labels.Set, poolName string) *failure {
	inAny := false
	for _, p := range pools {
		if !p.Set.Contains(ip) {
			continue
		}
		inAny = true
		if poolName != "" && p.Name != poolName {
			continue
		}
		if p.Admits(ns, nsLabels, svcLabels) {
			return nil
		}
	}
	switch {
	case !inAny:
		return fail(ReasonAddressNotInPool, "requested address %s is in no IPAddressPool", ip)
	case poolName != "":
		return fail(ReasonAddressNotInPool, "requested address %s is not in the requested pool %q, or that pool does not admit this Service", ip, poolName)
	default:
		return fail(ReasonPoolNotAllowed, "requested address %s is only in pools whose serviceAllocation does not admit this Service", ip)
	}
}

func decideAutomatic(alloc *allocator.Allocator, pools []*config.Pool, svc allocator.Service, ns string, nsLabels, svcLabels labels.Set, req config.ServiceRequest, keepHeld bool) decision {
	var d decision
	keep, fresh, f := candidatePools(pools, ns, nsLabels, svcLabels, req.Pool)
	if f != nil && !keepHeld {
		alloc.Release(svc.Key)
		return decision{Failure: f}
	}
	for _, family := range req.Families {
		ip, ok := heldIn(alloc, svc.Key, family, keep)
		if !ok && keepHeld {
			ip, ok = heldOf(alloc, svc.Key, family)
		}
		if ok {
			// Keeping an address re-checks the sharing rules: a Service
			// whose sharing key or ports changed may no longer share it.
			if err := alloc.Assign(svc, ip, keepHeld); err == nil {
				d.Addresses = append(d.Addresses, ip)
				continue
			}
		}
		if f != nil {
			// No pool in force may serve it; what it held is kept above.
			if d.Failure == nil {
				d.Failure = f
			}
			alloc.ReleaseFamily(svc.Key, allocatorFamily(family))
			continue
		}
		// An address the Service may not keep is let go before a new one is
		// picked, so that it never holds two of a family.
		alloc.ReleaseFamily(svc.Key, allocatorFamily(family))
		ip, _, err := alloc.Allocate(svc, allocatorFamily(family), fresh)
		if err != nil {
			if d.Failure == nil {
				d.Failure = failureFromAllocator(err, family)
			}
			if req.RequireAll {
				break
			}
			continue
		}
		d.Addresses = append(d.Addresses, ip)
	}
	if d.Failure != nil && req.RequireAll && !keepHeld {
		alloc.Release(svc.Key)
		d.Addresses = nil
	}
	return d
}

// candidatePools returns the pools whose addresses the Service may keep (any
// admitting pool, automatic assignment or not, so that switching autoAssign
// off moves nobody) and the pools it may get a new address from.
func candidatePools(pools []*config.Pool, ns string, nsLabels, svcLabels labels.Set, poolName string) (keep []*config.Pool, fresh []string, f *failure) {
	if poolName != "" {
		for _, p := range pools {
			if p.Name != poolName {
				continue
			}
			if !p.Admits(ns, nsLabels, svcLabels) {
				return nil, nil, fail(ReasonPoolNotAllowed, "pool %q does not admit this Service (see its serviceAllocation)", poolName)
			}
			return []*config.Pool{p}, []string{p.Name}, nil
		}
		return nil, nil, fail(ReasonUnknownPool, "requested pool %q does not exist or is invalid", poolName)
	}
	for _, p := range pools {
		if !p.Admits(ns, nsLabels, svcLabels) {
			continue
		}
		keep = append(keep, p)
		if p.AutoAssign {
			fresh = append(fresh, p.Name)
		}
	}
	if len(fresh) == 0 && len(keep) == 0 {
		return nil, nil, fail(ReasonNoPoolAdmits, "no IPAddressPool with autoAssign admits this Service")
	}
	return keep, fresh, nil
}

// heldOf reports the Service's address of the family.
func heldOf(alloc *allocator.Allocator, key string, family corev1.IPFamily) (netip.Addr, bool) {
	for _, ip := range alloc.Addresses(key) {
		if config.FamilyOf(ip) == family {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// heldIn reports the Service's address of the family when one of pools
// contains it.
func heldIn(alloc *allocator.Allocator, key string, family corev1.IPFamily, pools []*config.Pool) (netip.Addr, bool) {
	for _, ip := range alloc.Addresses(key) {
		if config.FamilyOf(ip) != family {
			continue
		}
		for _, p := range pools {
			if p.Set.Contains(ip) {
				return ip, true
			}
		}
	}
	return netip.Addr{}, false
}

func failureFromAllocator(err error, family corev1.IPFamily) *failure {
	var conflict *allocator.ConflictError
	switch {
	case errors.As(err, &conflict):
		return fail(ReasonAddressInUse, "requested address %s is held by %s (%s)", conflict.IP, conflict.Holder, conflict.Reason)
	case errors.Is(err, allocator.ErrNotInPool):
		return fail(ReasonAddressNotInPool, "%v", err)
	case errors.Is(err, allocator.ErrNoFamily):
		return fail(ReasonFamilyUnavailable, "no pool this Service may use has %s addresses", family)
	case errors.Is(err, allocator.ErrPoolsExhausted):
		return fail(ReasonPoolExhausted, "every pool this Service may use is out of %s addresses", family)
	case errors.Is(err, allocator.ErrUnknownPool):
		return fail(ReasonUnknownPool, "%v", err)
	default:
		return fail(ReasonInvalidRequest, "%v", err)
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

// addressList formats addresses for Events.
func addressList(ips []netip.Addr) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, ", ")
}
