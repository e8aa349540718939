package admission

import (
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

// canBothMatch tells whether some set of labels matches both selectors.
// Label values are arbitrary strings, so a NotIn can always be met (by a
// value it does not list, or by leaving the key out); what cannot be met
// is a key that must both exist and not exist, or In lists that share no
// value outside the NotIn lists. Operators it does not model (Gt, Lt,
// which label selectors of these objects cannot express) count as
// satisfiable, so the answer errs towards "they can".
func canBothMatch(a, b labels.Selector) bool {
	ra, selectableA := a.Requirements()
	rb, selectableB := b.Requirements()
	if !selectableA || !selectableB {
		return false // labels.Nothing()
	}
	type keyState struct {
		exists, absent bool
		allowed        map[string]bool // nil: any value
		forbidden      map[string]bool
	}
	keys := map[string]*keyState{}
	for _, r := range append(append(labels.Requirements{}, ra...), rb...) {
		k := keys[r.Key()]
		if k == nil {
			k = &keyState{forbidden: map[string]bool{}}
			keys[r.Key()] = k
		}
		values := r.Values().UnsortedList()
		switch r.Operator() {
		case selection.In, selection.Equals, selection.DoubleEquals:
			k.exists = true
			next := map[string]bool{}
			for _, v := range values {
				if k.allowed == nil || k.allowed[v] {
					next[v] = true
				}
			}
			k.allowed = next
		case selection.NotIn, selection.NotEquals:
			for _, v := range values {
				k.forbidden[v] = true
			}
		case selection.Exists:
			k.exists = true
		case selection.DoesNotExist:
			k.absent = true
		}
	}
	for _, k := range keys {
		if k.exists && k.absent {
			return false
		}
		if k.allowed != nil {
			left := 0
			for v := range k.allowed {
				if !k.forbidden[v] {
					left++
				}
			}
			if left == 0 {
				return false
			}
		}
	}
	return true
}
