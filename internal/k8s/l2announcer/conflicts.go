package l2announcer

import (
	"net"
	"net/netip"
	"sort"
	"sync"

	"github.com/barelb/barelb/internal/layer2"
)

// Address conflicts reach the Reconciler in two halves. The responders
// report them from their own goroutines, at any time: conflictInbox keeps
// those reports until the next plan. Each plan then reads the inbox and
// asks the responders which addresses they answer, and conflictBook, a
// pure step, decides what the Services are told: each conflict once, not
// once per plan.

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

// conflictFacts is what one plan knows of its addresses' conflicts.
type conflictFacts struct {
	// want are the addresses this node answers for (their interfaces
	// are not read).
	want map[netip.Addr][]string
	// inConflict are the wanted addresses some responder does not answer
	// because another host uses them; notAnswered, those no responder
	// answers (a probe runs, or they are yielded or in conflict). Only
	// these few are listed, not every wanted address: at 10,000
	// addresses a map of them all is much of a plan's garbage.
	inConflict, notAnswered map[netip.Addr]bool
	// probed is the last conflict a probe found per wanted address
	// (conflictInbox.take).
	probed map[netip.Addr]layer2.Conflict
	// seen are the conflicts seen while answering since the last plan.
	seen []layer2.Conflict
}

// conflictNoteKind is what a conflictNote tells.
type conflictNoteKind int

const (
	// noteInUse: a probe found the address in use by another host; this
	// node does not answer for it until it is free.
	noteInUse conflictNoteKind = iota + 1
	// noteOver: a conflict told before is over, and the address still
	// this node's.
	noteOver
	// noteClaimed: another host claimed an address this node answers
	// for; the responder goes on answering and defends it.
	noteClaimed
)

// conflictNote is one thing to tell an address's Services.
type conflictNote struct {
	kind    conflictNoteKind
	address netip.Addr
	// mac and iface are the other host's MAC and the interface it was
	// heard on (none for noteOver).
	mac   net.HardwareAddr
	iface string
}

// conflictNews is what a plan makes of its conflictFacts.
type conflictNews struct {
	// unanswered are the wanted addresses not answered on any interface,
	// or in conflict on one: their Services are not reported announced.
	unanswered map[netip.Addr]bool
	// notes are to be told: the new conflicts and the conflicts over,
	// each by address, then the new claims in the order seen.
	notes []conflictNote
}

// conflictBook remembers what the Services were told of each address's
// conflicts, so that a conflict is told once, not once per plan. The
// zero value is ready to use.
type conflictBook struct {
	// inUse and claimed are the other host's MAC last told per address:
	// a probe found it in use, or it was seen claiming it.
	inUse, claimed map[netip.Addr]string
}

// next decides what a plan tells of f, and remembers it.
func (b *conflictBook) next(f conflictFacts) conflictNews {
	if b.inUse == nil {
		b.inUse, b.claimed = map[netip.Addr]string{}, map[netip.Addr]string{}
	}
	news := conflictNews{unanswered: make(map[netip.Addr]bool, len(f.inConflict)+len(f.notAnswered))}
	for _, set := range []map[netip.Addr]bool{f.inConflict, f.notAnswered} {
		for ip := range set {
			if f.isInConflict(ip) || f.isNotAnswered(ip) {
				news.unanswered[ip] = true
			}
		}
	}

	var inUse, over []conflictNote
	for ip := range f.inConflict {
		if !f.isInConflict(ip) {
			continue
		}
		// An address in conflict before its probe's report came has no
		// MAC to tell yet (""): it is told when the report comes.
		c := f.probed[ip]
		if b.inUse[ip] == c.MAC.String() {
			continue
		}
		b.inUse[ip] = c.MAC.String()
		inUse = append(inUse, conflictNote{kind: noteInUse, address: ip, mac: c.MAC, iface: c.Interface})
	}
	for ip := range b.inUse {
		if f.isInConflict(ip) {
			continue
		}
		delete(b.inUse, ip)
		if f.wanted(ip) {
			over = append(over, conflictNote{kind: noteOver, address: ip})
		}
	}
	// Map order would make the log's order change from run to run.
	byAddress := func(notes []conflictNote) {
		sort.Slice(notes, func(i, j int) bool { return notes[i].address.Less(notes[j].address) })
	}
	byAddress(inUse)
	byAddress(over)
	news.notes = append(inUse, over...)

	for _, c := range f.seen {
		if !f.wanted(c.Address) || b.claimed[c.Address] == c.MAC.String() {
			continue
		}
		b.claimed[c.Address] = c.MAC.String()
		news.notes = append(news.notes, conflictNote{kind: noteClaimed, address: c.Address, mac: c.MAC, iface: c.Interface})
	}
	for ip := range b.claimed {
		if !f.wanted(ip) {
			delete(b.claimed, ip)
		}
	}
	return news
}

func (f conflictFacts) wanted(ip netip.Addr) bool {
	_, ok := f.want[ip]
	return ok
}

// isInConflict and isNotAnswered read the sets for wanted addresses only:
// there is nothing to tell of an address this node does not answer for.
func (f conflictFacts) isInConflict(ip netip.Addr) bool  { return f.inConflict[ip] && f.wanted(ip) }
func (f conflictFacts) isNotAnswered(ip netip.Addr) bool { return f.notAnswered[ip] && f.wanted(ip) }
