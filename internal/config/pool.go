package config

import (
	"fmt"
	"net/netip"
	"sort"

	"go4.org/netipx"
	"k8s.io/apimachinery/pkg/labels"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
)

// Pool is an IPAddressPool, parsed and validated.
type Pool struct {
	Name string
	// Labels are the pool object's labels, for ipAddressPoolSelectors.
	Labels labels.Set
	// Addresses are the pool's address blocks as written, and Ranges the
	// same parsed, in that order.
	Addresses []string
	Ranges    []netipx.IPRange
	// Set holds every address of the pool.
	Set           *netipx.IPSet
	AutoAssign    bool
	AvoidBuggyIPs bool
	// Priority orders pools that admit a Service; 0 means none, and pools
	// without one come after every pool with one.
	Priority int

	// Namespaces and NamespaceSelectors restrict the pool to Services in
	// those namespaces; both empty means every namespace.
	Namespaces         map[string]bool
	NamespaceSelectors []labels.Selector
	// ServiceSelectors restrict the pool to Services with these labels;
	// empty means every Service.
	ServiceSelectors []labels.Selector
}

// PoolFromAPI parses an IPAddressPool. The API server has already checked
// each field; this also catches what spans fields (overlapping blocks) and
// objects that reached the API server before its rules did.
func PoolFromAPI(p *barelbv1beta1.IPAddressPool) (*Pool, error) {
	addresses := make([]string, len(p.Spec.Addresses))
	for i, a := range p.Spec.Addresses {
		addresses[i] = string(a)
	}
	set, ranges, err := ParseAddressRanges(addresses)
	if err != nil {
		return nil, fmt.Errorf("pool %s: %w", p.Name, err)
	}
	pool := &Pool{
		Name:          p.Name,
		Labels:        labels.Set(p.Labels),
		Addresses:     addresses,
		Ranges:        ranges,
		Set:           set,
		AutoAssign:    p.Spec.AutoAssign == nil || *p.Spec.AutoAssign,
		AvoidBuggyIPs: p.Spec.AvoidBuggyIPs,
	}
	if sa := p.Spec.ServiceAllocation; sa != nil {
		pool.Priority = sa.Priority
		if len(sa.Namespaces) > 0 {
			pool.Namespaces = make(map[string]bool, len(sa.Namespaces))
			for _, ns := range sa.Namespaces {
				pool.Namespaces[ns] = true
			}
		}
		if pool.NamespaceSelectors, err = parseSelectors(sa.NamespaceSelectors); err != nil {
			return nil, fmt.Errorf("pool %s: serviceAllocation.namespaceSelectors: %w", p.Name, err)
		}
		if pool.ServiceSelectors, err = parseSelectors(sa.ServiceSelectors); err != nil {
			return nil, fmt.Errorf("pool %s: serviceAllocation.serviceSelectors: %w", p.Name, err)
		}
	}
	return pool, nil
}

func parseSelectors(in []barelbv1beta1.Selector) ([]labels.Selector, error) {
	out := make([]labels.Selector, 0, len(in))
	for i := range in {
		sel, err := in[i].AsSelector()
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		out = append(out, sel)
	}
	return out, nil
}

// Admits tells whether the pool may serve a Service in namespace ns (whose
// labels are nsLabels) with labels svcLabels, following MetalLB: the
// namespace must be listed or match a namespace selector, when there are
// any; and the Service must match a service selector, when there are any.
func (p *Pool) Admits(ns string, nsLabels, svcLabels labels.Set) bool {
	if len(p.Namespaces) > 0 || len(p.NamespaceSelectors) > 0 {
		if !p.Namespaces[ns] && !anyMatches(p.NamespaceSelectors, nsLabels) {
			return false
		}
	}
	if len(p.ServiceSelectors) > 0 && !anyMatches(p.ServiceSelectors, svcLabels) {
		return false
	}
	return true
}

// AnnouncedAddresses returns the addresses a speaker may announce for a
// Service whose barelb.io/ip-allocated-from-pool annotation names pool:
// those of addrs inside pool. The controller only ever gives a Service
// addresses of the pool it names there, so anything else in the status
// was written by someone else (a second load-balancer implementation, a
// user patching status) and could be a node's or the gateway's address;
// answering for it would steal that address's traffic. A nil pool (the
// annotation names no valid pool) admits nothing.
//
// addrs is returned as is when every address is inside, so that the
// speakers' plans, made for every Service on every event, cost no
// garbage; otherwise the result is a new slice and addrs is not touched
// (the speakers' records are shared and read-only).
func AnnouncedAddresses(pool *Pool, addrs []netip.Addr) []netip.Addr {
	if pool == nil || pool.Set == nil {
		return nil
	}
	inside := 0
	for _, ip := range addrs {
		if pool.Set.Contains(ip.Unmap()) {
			inside++
		}
	}
	if inside == len(addrs) {
		return addrs
	}
	out := make([]netip.Addr, 0, inside)
	for _, ip := range addrs {
		if pool.Set.Contains(ip.Unmap()) {
			out = append(out, ip)
		}
	}
	return out
}

func anyMatches(selectors []labels.Selector, set labels.Set) bool {
	for _, s := range selectors {
		if s.Matches(set) {
			return true
		}
	}
	return false
}

// SortPools puts pools in the order they are tried for a Service: pools
// with a priority first, lower numbers first; then pools without one; ties
// by name, so that every controller replica and every restart decides the
// same way.
func SortPools(pools []*Pool) {
	sort.SliceStable(pools, func(i, j int) bool {
		pi, pj := pools[i].Priority, pools[j].Priority
		if (pi == 0) != (pj == 0) {
			return pi != 0
		}
		if pi != pj {
			return pi < pj
		}
		return pools[i].Name < pools[j].Name
	})
}

// AutoAssignCandidates returns, in the order to try them, the pools that
// may hand an address automatically to a Service. pools must be sorted by
// SortPools.
func AutoAssignCandidates(pools []*Pool, ns string, nsLabels, svcLabels labels.Set) []*Pool {
	var out []*Pool
	for _, p := range pools {
		if p.AutoAssign && p.Admits(ns, nsLabels, svcLabels) {
			out = append(out, p)
		}
	}
	return out
}

// Overlaps maps each pool name to the sorted names of the other pools that
// share an address with it.
func Overlaps(pools []*Pool) map[string][]string {
	out := map[string][]string{}
	for i, a := range pools {
		for _, b := range pools[i+1:] {
			if a.Set.Overlaps(b.Set) {
				out[a.Name] = append(out[a.Name], b.Name)
				out[b.Name] = append(out[b.Name], a.Name)
			}
		}
	}
	for _, names := range out {
		sort.Strings(names)
	}
	return out
}
