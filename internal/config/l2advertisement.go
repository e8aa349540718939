package config

import (
	"fmt"

	"k8s.io/apimachinery/pkg/labels"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
)

// L2Advertisement is an L2Advertisement, parsed.
type L2Advertisement struct {
	Name string
	// Pools and PoolSelectors choose the pools announced; both empty means
	// every pool.
	Pools         map[string]bool
	PoolSelectors []labels.Selector
	// NodeSelectors choose the nodes that may announce; empty means all.
	NodeSelectors []labels.Selector
	// ServiceSelectors choose the Services announced; empty means all.
	ServiceSelectors []labels.Selector
	// Interfaces to answer on; empty means the default rule.
	Interfaces []string
	// Preferred weighs nodes: a node's preference is the sum of the weights
	// of the terms it matches.
	Preferred []WeightedSelector
}

// WeightedSelector is one term of a soft node preference.
type WeightedSelector struct {
	Weight   int
	Selector labels.Selector
}

// L2AdvertisementFromAPI parses an L2Advertisement.
func L2AdvertisementFromAPI(a *barelbv1beta1.L2Advertisement) (*L2Advertisement, error) {
	out := &L2Advertisement{Name: a.Name, Interfaces: a.Spec.Interfaces}
	if len(a.Spec.IPAddressPools) > 0 {
		out.Pools = make(map[string]bool, len(a.Spec.IPAddressPools))
		for _, p := range a.Spec.IPAddressPools {
			out.Pools[p] = true
		}
	}
	var err error
	if out.PoolSelectors, err = parseSelectors(a.Spec.IPAddressPoolSelectors); err != nil {
		return nil, fmt.Errorf("L2Advertisement %s: ipAddressPoolSelectors%w", a.Name, err)
	}
	if out.NodeSelectors, err = parseSelectors(a.Spec.NodeSelectors); err != nil {
		return nil, fmt.Errorf("L2Advertisement %s: nodeSelectors%w", a.Name, err)
	}
	if out.ServiceSelectors, err = parseSelectors(a.Spec.ServiceSelectors); err != nil {
		return nil, fmt.Errorf("L2Advertisement %s: serviceSelectors%w", a.Name, err)
	}
	for i := range a.Spec.PreferredNodeSelectors {
		term := &a.Spec.PreferredNodeSelectors[i]
		sel, err := term.Preference.AsSelector()
		if err != nil {
			return nil, fmt.Errorf("L2Advertisement %s: preferredNodeSelectors[%d]: %w", a.Name, i, err)
		}
		out.Preferred = append(out.Preferred, WeightedSelector{Weight: int(term.Weight), Selector: sel})
	}
	return out, nil
}

// CoversPool tells whether the advertisement announces the pool's
// addresses.
func (a *L2Advertisement) CoversPool(p *Pool) bool {
	if len(a.Pools) == 0 && len(a.PoolSelectors) == 0 {
		return true
	}
	return a.Pools[p.Name] || anyMatches(a.PoolSelectors, p.Labels)
}

// SelectsNode tells whether a node with these labels may announce.
func (a *L2Advertisement) SelectsNode(nodeLabels labels.Set) bool {
	return len(a.NodeSelectors) == 0 || anyMatches(a.NodeSelectors, nodeLabels)
}

// SelectsService tells whether a Service with these labels is announced.
func (a *L2Advertisement) SelectsService(svcLabels labels.Set) bool {
	return len(a.ServiceSelectors) == 0 || anyMatches(a.ServiceSelectors, svcLabels)
}

// Preference is a node's preference under this advertisement.
func (a *L2Advertisement) Preference(nodeLabels labels.Set) int {
	sum := 0
	for _, p := range a.Preferred {
		if p.Selector.Matches(nodeLabels) {
			sum += p.Weight
		}
	}
	return sum
}
