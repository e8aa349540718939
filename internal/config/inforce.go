package config

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"go4.org/netipx"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
)

// PoolConditionValid is the pool condition the controller sets False when
// it refuses a pool's spec.
const PoolConditionValid = "Valid"

// PoolResolution is what barelb makes of one IPAddressPool object: the
// definition in force and, when its spec is refused, why.
type PoolResolution struct {
	Name string
	// InForce is the definition barelb uses: the spec when it is valid,
	// otherwise the last valid definition; nil when there is none (the
	// pool hands out nothing).
	InForce *Pool
	// Problem says why the spec is not used; "" when it is.
	Problem string
}

// ResolvePools decides which definition of each pool is in force, given
// the pool objects and the definitions in force before (by name; nil or
// missing when unknown, as after a restart).
//
// The admission webhook refuses what would cost addresses, but it fails
// open (failurePolicy Ignore), so the controller must not trust that an
// edit passed it: a spec that does not parse, or an edit that makes the
// pool overlap another pool it did not overlap before, is refused, and
// the last valid definition stays in force. Applying it would release or
// move every Service holding an address the edit drops. The edit is
// applied as soon as it is valid.
//
// The last valid definition comes from previous, else from the pool's
// status.addressesInForce (written by the controller, so that a restart
// keeps refusing the edit instead of applying it), with the other fields
// of the spec. A pool never seen valid has none.
//
// A pool first seen with an overlap is accepted, as the webhook accepts an
// edit of a pool whose overlap predates it: the allocator never hands an
// address out twice, and the pool's Overlapping condition tells.
//
// Pools are judged in name order, each against the others' definitions in
// force, so two edits that would overlap each other cannot both pass.
//
// A pool judged early is judged against the last valid definitions of the
// pools after it, which an edit of theirs may just have moved out of its
// way; so the judging is repeated, with the outcome as the definitions
// before, until it no longer changes. The outcome is then the same however
// often it is resolved again: an edit refused now stays refused until some
// pool's spec changes, which is when the Services are decided again. (One
// pass was not: a refusal lifted by the next, unrelated resolution left
// Services the refusal had let keep their addresses outside every pool in
// force, and no speaker announced them.) A pass only turns refusals into
// acceptances, never back, so it ends within one pass per pool.
func ResolvePools(objs []*barelbv1beta1.IPAddressPool, previous map[string]*Pool) []PoolResolution {
	out := resolveOnce(objs, previous)
	for pass := 0; pass < len(objs); pass++ {
		next := make(map[string]*Pool, len(out))
		changed := false
		for _, r := range out {
			if r.InForce == nil {
				continue
			}
			next[r.Name] = r.InForce
			if before := previous[r.Name]; before == nil || !before.Set.Equal(r.InForce.Set) {
				changed = true
			}
		}
		if !changed {
			break
		}
		previous = next
		out = resolveOnce(objs, previous)
	}
	return out
}

// resolveOnce is one pass of ResolvePools.
func resolveOnce(objs []*barelbv1beta1.IPAddressPool, previous map[string]*Pool) []PoolResolution {
	sorted := slices.Clone(objs)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })

	parsed := make([]*Pool, len(sorted))
	errs := make([]error, len(sorted))
	last := make([]*Pool, len(sorted))
	// ref is what each other pool is judged against: its definition in
	// force, once decided; before that the last valid one, else its spec.
	ref := make(map[string]*Pool, len(sorted))
	for i, obj := range sorted {
		parsed[i], errs[i] = PoolFromAPI(obj)
		last[i] = previous[obj.Name]
		if last[i] == nil {
			last[i] = fromStatus(obj)
		}
		switch {
		case last[i] != nil:
			ref[obj.Name] = last[i]
		case errs[i] == nil:
			ref[obj.Name] = parsed[i]
		}
	}

	out := make([]PoolResolution, len(sorted))
	for i, obj := range sorted {
		r := PoolResolution{Name: obj.Name}
		switch {
		case errs[i] != nil && last[i] != nil:
			r.InForce = last[i]
			r.Problem = fmt.Sprintf("%v; the last valid addresses (%s) stay in force until the pool is fixed", errs[i], strings.Join(last[i].Addresses, ", "))
		case errs[i] != nil:
			r.Problem = fmt.Sprintf("%v; barelb knows no valid definition of this pool: it hands out no address, and Services holding its addresses keep them until it is fixed", errs[i])
		default:
			r.InForce = parsed[i]
			if last[i] != nil {
				if msg := newOverlap(parsed[i], last[i], obj.Name, ref); msg != "" {
					r.InForce = last[i]
					r.Problem = fmt.Sprintf("%s; the edit is refused and the last valid addresses (%s) stay in force until the pool is fixed", msg, strings.Join(last[i].Addresses, ", "))
				}
			}
		}
		if r.InForce != nil {
			ref[obj.Name] = r.InForce
		} else {
			delete(ref, obj.Name)
		}
		out[i] = r
	}
	return out
}

// newOverlap says which pools next overlaps that last did not, in words;
// "" when none.
func newOverlap(next, last *Pool, name string, ref map[string]*Pool) string {
	if next.Set.Equal(last.Set) {
		return ""
	}
	names := make([]string, 0, len(ref))
	for other := range ref {
		names = append(names, other)
	}
	sort.Strings(names)
	var msgs []string
	for _, other := range names {
		o := ref[other]
		if other == name || o.Set == nil || !next.Set.Overlaps(o.Set) || last.Set.Overlaps(o.Set) {
			continue
		}
		var b netipx.IPSetBuilder
		b.AddSet(next.Set)
		b.Intersect(o.Set)
		common, _ := b.IPSet() // only fails on invalid input, which parsed sets are not
		msgs = append(msgs, fmt.Sprintf("addresses overlap IPAddressPool %q on %s; an address may belong to one pool only", other, describeRanges(common)))
	}
	return strings.Join(msgs, "; ")
}

// describeRanges writes a set as its ranges, the first few of them.
func describeRanges(s *netipx.IPSet) string {
	var parts []string
	for _, r := range s.Ranges() {
		switch p, ok := r.Prefix(); {
		case r.From() == r.To():
			parts = append(parts, r.From().String())
		case ok:
			parts = append(parts, p.String())
		default:
			parts = append(parts, r.String())
		}
	}
	if len(parts) > 3 {
		parts = append(parts[:3], fmt.Sprintf("and %d more", len(parts)-3))
	}
	return strings.Join(parts, ", ")
}

// fromStatus is the last valid definition the controller recorded in the
// pool's status: its addresses in force with the spec's other fields; nil
// when there is none or it does not parse.
func fromStatus(obj *barelbv1beta1.IPAddressPool) *Pool {
	if len(obj.Status.AddressesInForce) == 0 {
		return nil
	}
	c := obj.DeepCopy()
	c.Spec.Addresses = make([]barelbv1beta1.AddressRange, len(obj.Status.AddressesInForce))
	for i, a := range obj.Status.AddressesInForce {
		c.Spec.Addresses[i] = barelbv1beta1.AddressRange(a)
	}
	p, err := PoolFromAPI(c)
	if err != nil {
		return nil
	}
	return p
}

// PoolInForce is the pool as the speakers must use it: its spec, unless
// the controller refused this generation of it (condition Valid False);
// then the last valid addresses the controller recorded, so that the
// speakers keep announcing what the controller handed out. It fails when
// there is no usable definition.
func PoolInForce(obj *barelbv1beta1.IPAddressPool) (*Pool, error) {
	c := meta.FindStatusCondition(obj.Status.Conditions, PoolConditionValid)
	refused := c != nil && c.Status == metav1.ConditionFalse && c.ObservedGeneration == obj.Generation
	if !refused {
		return PoolFromAPI(obj)
	}
	if p := fromStatus(obj); p != nil {
		return p, nil
	}
	return nil, fmt.Errorf("pool %s: the controller refused its spec (%s) and knows no valid definition of it", obj.Name, c.Message)
}
