package allocator

import (
	"encoding/binary"
	"math"
	"net/netip"
	"slices"

	"go4.org/netipx"
)

// poolState is one pool plus what the allocator needs to find its lowest free
// address quickly without storing anything per free address.
//
// Each range has a cursor: the lowest address never examined. The cursor only
// moves forward, over addresses that are held or buggy, so each address is
// skipped at most once per pool (amortized O(1) per allocation). Addresses
// below a cursor that become free again go into the freed min-heap, so the
// lowest free address is min(heap top, cursors) in O(log freed). Heap entries
// that were assigned again in the meantime are dropped lazily when they reach
// the top.
//
// Invariant: every free, allocatable address of the pool below the cursor of
// a range containing it is in freed.
type poolState struct {
	def     Pool
	members *netipx.IPSet // the pool's addresses; its ranges are merged and sorted
	cursors [2][]rangeCursor
	freed   [2]addrHeap
	inFreed map[netip.Addr]struct{} // entries of freed, so none is pushed twice

	assigned [2]int64 // held addresses in the pool, per family slot
	// assignedAllocatable counts the held addresses that allocatable also
	// counts, so a held .0 in an AvoidBuggyIPs pool is not subtracted twice.
	assignedAllocatable [2]int64
	allocatable         [2]uint64 // addresses Allocate may hand out, saturating at MaxUint64
}

// rangeCursor walks one merged range of a pool.
type rangeCursor struct {
	rng  netipx.IPRange
	next netip.Addr // lowest address never examined; zero once past the range
}

func newPoolState(p Pool) *poolState {
	ps := &poolState{
		def:     Pool{Name: p.Name, Ranges: slices.Clone(p.Ranges), AvoidBuggyIPs: p.AvoidBuggyIPs},
		inFreed: map[netip.Addr]struct{}{},
	}
	var b netipx.IPSetBuilder
	for _, r := range p.Ranges {
		if !r.IsValid() {
			continue
		}
		if r.From().Is4In6() && r.To().Is4In6() {
			r = netipx.IPRangeFrom(r.From().Unmap(), r.To().Unmap())
		}
		b.AddRange(r)
	}
	ps.members, _ = b.IPSet() // only invalid ranges cause errors, and none were added
	for _, r := range ps.members.Ranges() {
		slot := familySlot(r.From())
		ps.cursors[slot] = append(ps.cursors[slot], rangeCursor{rng: r, next: r.From()})
		size := rangeSize(r)
		if p.AvoidBuggyIPs && slot == 0 {
			size -= buggyCount(r)
		}
		ps.allocatable[slot] = saturatingAdd(ps.allocatable[slot], size)
	}
	return ps
}

// sameDefinition reports whether p defines the same pool as ps, so its state
// can be kept across SetPools.
func (ps *poolState) sameDefinition(p Pool) bool {
	return ps.def.Name == p.Name && ps.def.AvoidBuggyIPs == p.AvoidBuggyIPs && slices.Equal(ps.def.Ranges, p.Ranges)
}

func (ps *poolState) hasFamily(slot int) bool {
	return len(ps.cursors[slot]) > 0
}

// allocatableAddr reports whether Allocate may hand out ip from this pool,
// ignoring whether it is held.
func (ps *poolState) allocatableAddr(ip netip.Addr) bool {
	return !ps.def.AvoidBuggyIPs || !isBuggy(ip)
}

// isBuggy reports whether ip is an IPv4 address ending in .0 or .255.
func isBuggy(ip netip.Addr) bool {
	if !ip.Is4() {
		return false
	}
	last := ip.As4()[3]
	return last == 0 || last == 255
}

// lowestFree returns the lowest address of the family slot that is in the
// pool, allocatable and not in held. It advances cursors past held addresses
// and drops stale heap entries as it goes.
func (ps *poolState) lowestFree(slot int, held map[netip.Addr]*holding) (netip.Addr, bool) {
	var best netip.Addr
	heap := &ps.freed[slot]
	for len(*heap) > 0 {
		top := (*heap)[0]
		if _, isHeld := held[top]; !isHeld {
			best = top
			break
		}
		heap.pop()
		delete(ps.inFreed, top)
	}
	for i := range ps.cursors[slot] {
		c := &ps.cursors[slot][i]
		for c.next.IsValid() {
			if _, isHeld := held[c.next]; !isHeld && ps.allocatableAddr(c.next) {
				break
			}
			c.advance()
		}
		if c.next.IsValid() && (!best.IsValid() || c.next.Less(best)) {
			best = c.next
		}
	}
	return best, best.IsValid()
}

// take removes ip, just returned by lowestFree, from the free-space
// bookkeeping, so the next lowestFree does not have to skip it.
func (ps *poolState) take(ip netip.Addr) {
	slot := familySlot(ip)
	if heap := &ps.freed[slot]; len(*heap) > 0 && (*heap)[0] == ip {
		heap.pop()
		delete(ps.inFreed, ip)
	}
	for i := range ps.cursors[slot] {
		if c := &ps.cursors[slot][i]; c.next == ip {
			c.advance()
		}
	}
}

func (c *rangeCursor) advance() {
	if c.next == c.rng.To() {
		c.next = netip.Addr{}
		return
	}
	c.next = c.next.Next()
}

// addressHeld updates the counts for ip becoming held.
func (ps *poolState) addressHeld(ip netip.Addr) {
	ps.countHeld(ip, +1)
}

// addressFreed updates the counts for ip becoming free and, if a cursor has
// passed it, remembers it in the heap so it is found again.
func (ps *poolState) addressFreed(ip netip.Addr, held map[netip.Addr]*holding) {
	if !ps.countHeld(ip, -1) || !ps.allocatableAddr(ip) {
		return
	}
	if _, queued := ps.inFreed[ip]; queued {
		return
	}
	slot := familySlot(ip)
	for _, c := range ps.cursors[slot] {
		if c.rng.Contains(ip) && (!c.next.IsValid() || ip.Less(c.next)) {
			ps.freed[slot].push(ip)
			ps.inFreed[ip] = struct{}{}
			return
		}
	}
}

// countHeld adds delta to the counts when ip is in the pool, and reports
// whether it is.
func (ps *poolState) countHeld(ip netip.Addr, delta int64) bool {
	if !ps.members.Contains(ip) {
		return false
	}
	slot := familySlot(ip)
	ps.assigned[slot] += delta
	if ps.allocatableAddr(ip) {
		ps.assignedAllocatable[slot] += delta
	}
	return true
}

// available is the number of addresses of the family slot that Allocate could
// still hand out, saturating at math.MaxInt64.
func (ps *poolState) available(slot int) int64 {
	free := ps.allocatable[slot] - uint64(ps.assignedAllocatable[slot])
	if free > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(free)
}

// rangeSize is the number of addresses in r, saturating at math.MaxUint64.
// Saturating there is exact enough: Stats saturates far lower, at MaxInt64.
func rangeSize(r netipx.IPRange) uint64 {
	from, to := r.From().As16(), r.To().As16()
	fromHi, fromLo := binary.BigEndian.Uint64(from[:8]), binary.BigEndian.Uint64(from[8:])
	toHi, toLo := binary.BigEndian.Uint64(to[:8]), binary.BigEndian.Uint64(to[8:])
	lo := toLo - fromLo
	hi := toHi - fromHi
	if toLo < fromLo {
		hi-- // borrow
	}
	if hi != 0 || lo == math.MaxUint64 {
		return math.MaxUint64
	}
	return lo + 1
}

// buggyCount is the number of addresses ending in .0 or .255 in the IPv4
// range r.
func buggyCount(r netipx.IPRange) uint64 {
	from := int64(binary.BigEndian.Uint32(r.From().AsSlice()))
	to := int64(binary.BigEndian.Uint32(r.To().AsSlice()))
	// upTo counts such addresses in [0, x], for x >= -1.
	upTo := func(x int64) int64 {
		if x < 0 {
			return 0
		}
		return x/256 + 1 + (x+1)/256 // x.0 addresses, then x.255 addresses
	}
	return uint64(upTo(to) - upTo(from-1))
}

func saturatingAdd(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}

// addrHeap is a min-heap of addresses. It is written out rather than using
// container/heap so pushing and popping do not box each address.
type addrHeap []netip.Addr

func (h *addrHeap) push(ip netip.Addr) {
	*h = append(*h, ip)
	s := *h
	for i := len(s) - 1; i > 0; {
		parent := (i - 1) / 2
		if !s[i].Less(s[parent]) {
			break
		}
		s[i], s[parent] = s[parent], s[i]
		i = parent
	}
}

// pop removes the lowest address; the heap must not be empty.
func (h *addrHeap) pop() {
	s := *h
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	for i := 0; ; {
		smallest := i
		if l := 2*i + 1; l < len(s) && s[l].Less(s[smallest]) {
			smallest = l
		}
		if r := 2*i + 2; r < len(s) && s[r].Less(s[smallest]) {
			smallest = r
		}
		if smallest == i {
			break
		}
		s[i], s[smallest] = s[smallest], s[i]
		i = smallest
	}
	*h = s
}
