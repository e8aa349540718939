package l2announcer

import (
	"net/netip"
	"sync"

	"github.com/barelb/barelb/internal/layer2"
)

// conflictInbox holds the responders' conflict reports until a plan reads
// them. Its lock guards its own fields and nothing else: the Reconciler's
// mu is held for a whole plan (API reads, responder calls), and a
// responder's report must not wait that long (layer2.Options.OnConflict).
type conflictInbox struct {
	mu sync.Mutex
	// probed is the last conflict a probe found per address. It is kept
	// across plans: the responder reports a conflict once, and every plan
	// while it lasts needs its MAC.
	probed map[netip.Addr]layer2.Conflict
	// seen are the conflicts seen while answering since the last plan
	// read them, in the order reported.
	seen []layer2.Conflict
}

// add keeps a responder's report (a resolved conflict needs no keeping:
// the responders' own state says so).
func (b *conflictInbox) add(c layer2.Conflict) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch c.Kind {
	case layer2.ConflictProbed:
		if b.probed == nil {
			b.probed = map[netip.Addr]layer2.Conflict{}
		}
		b.probed[c.Address] = c
	case layer2.ConflictSeen:
		b.seen = append(b.seen, c)
	}
}

// take returns the last probed conflict of each wanted address and hands
// over the conflicts seen since the last take. The probed conflicts of
// addresses no longer wanted are forgotten: should one come back, its
// responder probes it anew and reports again.
func (b *conflictInbox) take(want map[netip.Addr][]string) (probed map[netip.Addr]layer2.Conflict, seen []layer2.Conflict) {
	b.mu.Lock()
	defer b.mu.Unlock()
	probed = map[netip.Addr]layer2.Conflict{}
	for ip, c := range b.probed {
		if _, ok := want[ip]; ok {
			probed[ip] = c
		} else {
			delete(b.probed, ip)
		}
	}
	seen, b.seen = b.seen, nil
	return probed, seen
}
