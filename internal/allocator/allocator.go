package allocator

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"go4.org/netipx"
)

// Family is an IP address family.
type Family int

// The address families, numbered after the IP versions.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// FamilyOf returns the family of ip. IPv4-mapped IPv6 addresses count as IPv4,
// because the allocator stores them unmapped. It returns 0 for the zero Addr.
func FamilyOf(ip netip.Addr) Family {
	switch ip = ip.Unmap(); {
	case ip.Is4():
		return IPv4
	case ip.Is6():
		return IPv6
	default:
		return 0
	}
}

// String names the family as users write it.
func (f Family) String() string {
	switch f {
	case IPv4:
		return "IPv4"
	case IPv6:
		return "IPv6"
	default:
		return fmt.Sprintf("Family(%d)", int(f))
	}
}

// slot is the index used for per-family arrays: 0 for IPv4, 1 for IPv6.
func (f Family) slot() (int, bool) {
	switch f {
	case IPv4:
		return 0, true
	case IPv6:
		return 1, true
	default:
		return 0, false
	}
}

// familySlot is the per-family array index of a normalized, valid address.
func familySlot(ip netip.Addr) int {
	if ip.Is4() {
		return 0
	}
	return 1
}

// Pool is what the allocator knows of one IPAddressPool.
type Pool struct {
	Name string
	// Ranges are the pool's addresses. Invalid ranges are ignored. Ranges may
	// overlap each other and other pools' ranges.
	Ranges []netipx.IPRange
	// AvoidBuggyIPs skips IPv4 addresses ending in .0 or .255 when allocating,
	// because some client network stacks wrongly treat them as broadcast or
	// network addresses. They can still be assigned explicitly.
	AvoidBuggyIPs bool
}

// Port is one service port as far as sharing is concerned.
type Port struct {
	Port     int32
	Protocol string // "TCP", "UDP" or "SCTP", compared exactly
}

// Service is what the allocator knows of one LoadBalancer Service.
type Service struct {
	// Key is "namespace/name"; the part before the first "/" is the
	// Service's namespace for the sharing rules.
	Key        string
	SharingKey string // "" = never shares
	Ports      []Port
	// Two services with the same non-empty SharingKey may share an address when no
	// Port (port+protocol) is in both (see canShare). ClusterTraffic
	// (externalTrafficPolicy Cluster) and Selector (canonical string of the
	// pod selector) no longer restrict sharing: the announcers hold the
	// endpoints of every Local Service on an address instead.
	ClusterTraffic bool
	Selector       string
	// SharingNamespaces are the other namespaces whose Services may share
	// this Service's address; "*" allows any. Services of two namespaces
	// share only when each allows the other's namespace: a sharing key is
	// no secret, and must not let another team pin an address.
	SharingNamespaces []string
	// Unreadable marks a Service whose request could not be read (a
	// broken annotation) as loaded at start-up: it keeps the addresses it
	// holds, next to the holders it had, whatever the rules say, since
	// they cannot be checked; no Service that does not hold the address
	// yet may join it until the request is readable again.
	Unreadable bool
}

// Errors returned by the allocator, wrapped with context; test with errors.Is.
var (
	// ErrNotInPool: Assign was given an address that no pool contains.
	ErrNotInPool = errors.New("address is in no pool")
	// ErrPoolsExhausted: none of the pools Allocate was given has a free address.
	ErrPoolsExhausted = errors.New("no free address in the pools")
	// ErrUnknownPool: Allocate was given a pool name that SetPools did not set.
	ErrUnknownPool = errors.New("unknown pool")
	// ErrNoFamily: none of the pools Allocate was given has a range of the family.
	ErrNoFamily = errors.New("no pool has a range of the address family")
)

// errEmptyKey guards the maps against a service without identity, which could
// never be released.
var errEmptyKey = errors.New("service key is empty")

// ConflictError reports that an address is held by a service that the
// requesting service may not share it with.
type ConflictError struct {
	IP     netip.Addr
	Holder string // key of a service holding IP
	Reason string // why the two may not share
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("address %s is held by %s and cannot be shared: %s", e.IP, e.Holder, e.Reason)
}

// holding records who holds one address.
type holding struct {
	holders []string // service keys, sorted
	// sharingKey is the holders' sharing key; holders of one address always
	// have the same one, since different keys never share.
	sharingKey string
	// pool is the pool the address was allocated from, "" when it was only
	// ever assigned. It may name a pool that no longer contains the address.
	pool string
}

// serviceRecord is what the allocator remembers of a service holding addresses.
type serviceRecord struct {
	addr [2]netip.Addr // held address per family slot; zero when none
	// svc is the service as it was when it last got addr of that family. Sharing
	// checks against a holder use this snapshot: the caller reconciles each
	// family on its own, so that is what the holder's address was judged by.
	svc [2]Service
}

// Allocator assigns addresses from pools to services. Create it with New.
// It is not safe for concurrent use; see the package documentation.
type Allocator struct {
	pools     map[string]*poolState
	poolNames []string      // sorted, for deterministic iteration
	inAnyPool *netipx.IPSet // union of all pools' ranges
	holdings  map[netip.Addr]*holding
	services  map[string]*serviceRecord
	// sharing indexes held addresses by their holders' non-empty sharing key,
	// so Allocate finds an address to share without scanning all addresses.
	sharing map[string]map[netip.Addr]struct{}
}

// New returns an allocator with no pools and no assignments.
func New() *Allocator {
	return &Allocator{
		pools:     map[string]*poolState{},
		inAnyPool: &netipx.IPSet{},
		holdings:  map[netip.Addr]*holding{},
		services:  map[string]*serviceRecord{},
		sharing:   map[string]map[netip.Addr]struct{}{},
	}
}

// normalize makes equal addresses compare equal: IPv4-mapped IPv6 addresses
// become IPv4, and zones (meaningless for pool addresses) are dropped.
func normalize(ip netip.Addr) netip.Addr {
	return ip.Unmap().WithZone("")
}

// SetPools replaces the pool set. Existing assignments are kept (recorded by
// address) even when no pool contains them any more; Orphans reports those.
// When two pools have the same name, the later one wins.
//
// A pool whose definition is unchanged keeps its allocation state. A new or
// changed pool costs O(addresses in use) to set up.
func (a *Allocator) SetPools(pools []Pool) {
	byName := make(map[string]Pool, len(pools))
	for _, p := range pools {
		byName[p.Name] = p
	}
	next := make(map[string]*poolState, len(byName))
	var rebuilt []*poolState
	var all netipx.IPSetBuilder
	for name, p := range byName {
		ps := a.pools[name]
		if ps == nil || !ps.sameDefinition(p) {
			ps = newPoolState(p)
			rebuilt = append(rebuilt, ps)
		}
		next[name] = ps
		all.AddSet(ps.members)
	}
	// Count the addresses already held in the new pools once, up front, so
	// Stats stays O(1) afterwards.
	if len(rebuilt) > 0 {
		for ip := range a.holdings {
			for _, ps := range rebuilt {
				ps.countHeld(ip, +1)
			}
		}
	}
	a.pools = next
	a.poolNames = a.poolNames[:0]
	for name := range next {
		a.poolNames = append(a.poolNames, name)
	}
	slices.Sort(a.poolNames)
	// The builder only reports invalid input, and newPoolState drops invalid
	// ranges; the set is usable either way.
	a.inAnyPool, _ = all.IPSet()
}

// Orphans lists the keys of services holding an address that no pool
// contains, sorted. It costs O(services).
func (a *Allocator) Orphans() []string {
	var keys []string
	for key, rec := range a.services {
		for _, ip := range rec.addr {
			if ip.IsValid() && !a.inAnyPool.Contains(ip) {
				keys = append(keys, key)
				break
			}
		}
	}
	slices.Sort(keys)
	return keys
}

// Assign records that svc holds ip (used at start-up to load existing
// assignments, and for addresses a Service requests). The address must lie in
// some pool (any pool, also one a caller would not auto-assign from) unless
// allowOutsidePools is true (start-up loading of an address whose pool was
// deleted — it then shows in Orphans). Idempotent for the same service and
// address; calling it again with changed service fields re-checks sharing.
// Errors: ErrNotInPool; *ConflictError when another service holds ip and
// sharing is not allowed. A service holds at most one address per family:
// assigning a second address of a family replaces (releases) the first.
// On error nothing changes.
func (a *Allocator) Assign(svc Service, ip netip.Addr, allowOutsidePools bool) error {
	if svc.Key == "" {
		return fmt.Errorf("assign %s: %w", ip, errEmptyKey)
	}
	ip = normalize(ip)
	if !ip.IsValid() {
		return fmt.Errorf("assign to %s: the zero address: %w", svc.Key, ErrNotInPool)
	}
	if !allowOutsidePools && !a.inAnyPool.Contains(ip) {
		return fmt.Errorf("assign %s to %s: %w", ip, svc.Key, ErrNotInPool)
	}
	slot := familySlot(ip)
	if conflict := a.conflict(svc, slot, ip); conflict != nil {
		return conflict
	}
	a.hold(svc, slot, ip, "")
	return nil
}

// Allocate gives svc an address of the family from the first of pools (in the
// caller's order; the caller filters and orders pools) that has one.
//
// If svc already holds an address of that family in one of those pools, and
// may still share it with its other holders, that address is returned
// unchanged (stability). Otherwise, if svc has a SharingKey and compatible
// services with the same key hold an address of that family in one of those
// pools, that address is shared (the one in the earliest pool, lowest first).
// Otherwise the lowest free address of the first pool with a free address
// (skipping .0/.255 when AvoidBuggyIPs) is chosen — lowest means deterministic
// and predictable for users. An address svc held before of that family is
// then released.
//
// It returns the address and the name of the pool it came from.
// Errors: ErrUnknownPool (wrapped, naming the pool) if a listed pool does not
// exist; ErrNoFamily when none of the pools has any range of the family;
// ErrPoolsExhausted when none of the pools has a free address of the family
// (also when pools is empty). On error nothing changes.
func (a *Allocator) Allocate(svc Service, family Family, pools []string) (netip.Addr, string, error) {
	slot, ok := family.slot()
	if !ok {
		return netip.Addr{}, "", fmt.Errorf("allocate %s address for %s: %w", family, svc.Key, ErrNoFamily)
	}
	if svc.Key == "" {
		return netip.Addr{}, "", fmt.Errorf("allocate %s address: %w", family, errEmptyKey)
	}
	listed := make([]*poolState, 0, len(pools))
	hasFamily := false
	for _, name := range pools {
		ps := a.pools[name]
		if ps == nil {
			return netip.Addr{}, "", fmt.Errorf("allocate %s address for %s: pool %q: %w", family, svc.Key, name, ErrUnknownPool)
		}
		listed = append(listed, ps)
		hasFamily = hasFamily || ps.hasFamily(slot)
	}
	if len(listed) == 0 {
		return netip.Addr{}, "", fmt.Errorf("allocate %s address for %s: no pools given: %w", family, svc.Key, ErrPoolsExhausted)
	}
	if !hasFamily {
		return netip.Addr{}, "", fmt.Errorf("allocate %s address for %s from pools %q: %w", family, svc.Key, pools, ErrNoFamily)
	}

	if rec := a.services[svc.Key]; rec != nil && rec.addr[slot].IsValid() {
		current := rec.addr[slot]
		if _, pool := a.listedPoolOf(current, listed); pool != "" && a.conflict(svc, slot, current) == nil {
			a.hold(svc, slot, current, pool)
			return current, pool, nil
		}
	}
	if ip, pool, ok := a.findShareable(svc, slot, listed); ok {
		a.hold(svc, slot, ip, pool)
		return ip, pool, nil
	}
	for _, ps := range listed {
		if ip, ok := ps.lowestFree(slot, a.holdings); ok {
			ps.take(ip)
			a.hold(svc, slot, ip, ps.def.Name)
			return ip, ps.def.Name, nil
		}
	}
	return netip.Addr{}, "", fmt.Errorf("allocate %s address for %s from pools %q: %w", family, svc.Key, pools, ErrPoolsExhausted)
}

// listedPoolOf returns the position of the first pool among listed that
// contains ip, and the name of the pool ip is reported to come from: its
// recorded pool if listed and still containing it, otherwise that first one.
// It returns -1 and "" when no listed pool contains ip.
func (a *Allocator) listedPoolOf(ip netip.Addr, listed []*poolState) (int, string) {
	first, name := -1, ""
	origin := ""
	if h := a.holdings[ip]; h != nil {
		origin = h.pool
	}
	for i, ps := range listed {
		if !ps.members.Contains(ip) {
			continue
		}
		if first < 0 {
			first, name = i, ps.def.Name
		}
		if origin != "" && ps.def.Name == origin {
			return first, origin
		}
	}
	return first, name
}

// findShareable finds an address of the family slot in the listed pools that
// services with svc's sharing key hold and svc may share: the one in the
// earliest listed pool, the lowest among those. It costs O(addresses held
// under that sharing key).
func (a *Allocator) findShareable(svc Service, slot int, listed []*poolState) (netip.Addr, string, bool) {
	if svc.SharingKey == "" {
		return netip.Addr{}, "", false
	}
	var best netip.Addr
	bestPos, bestPool := -1, ""
	for ip := range a.sharing[svc.SharingKey] {
		if familySlot(ip) != slot {
			continue
		}
		pos, pool := a.listedPoolOf(ip, listed)
		if pos < 0 || (bestPos >= 0 && (pos > bestPos || pos == bestPos && best.Less(ip))) {
			continue
		}
		if a.conflict(svc, slot, ip) != nil {
			continue
		}
		best, bestPos, bestPool = ip, pos, pool
	}
	return best, bestPool, bestPos >= 0
}

// conflict returns why svc may not hold ip alongside its current holders, or
// nil if it may. svc itself is not checked against its own earlier snapshot.
func (a *Allocator) conflict(svc Service, slot int, ip netip.Addr) *ConflictError {
	h := a.holdings[ip]
	if h == nil {
		return nil
	}
	holdsIt := false
	if rec := a.services[svc.Key]; rec != nil && rec.addr[slot] == ip {
		holdsIt = true
	}
	for _, key := range h.holders {
		if key == svc.Key {
			continue
		}
		rec := a.services[key]
		if rec == nil {
			continue // unreachable: every holder has a record
		}
		holder := rec.svc[slot]
		switch {
		case svc.Unreadable:
			// Its rules cannot be checked; it keeps what its status says.
			continue
		case holder.Unreadable && holdsIt:
			// A partner of a Service with a broken annotation is not
			// moved for it.
			continue
		case holder.Unreadable:
			return &ConflictError{IP: ip, Holder: key, Reason: "the holder's annotations cannot be read; nobody new shares its address until they are fixed"}
		}
		if reason, ok := canShare(svc, holder); !ok {
			return &ConflictError{IP: ip, Holder: key, Reason: reason}
		}
	}
	return nil
}

// hold records that svc holds ip, replacing any other address of the family
// svc held. pool is the pool ip was allocated from, "" for Assign. The caller
// has checked that svc may hold ip.
func (a *Allocator) hold(svc Service, slot int, ip netip.Addr, pool string) {
	rec := a.services[svc.Key]
	if rec == nil {
		rec = &serviceRecord{}
		a.services[svc.Key] = rec
	}
	if old := rec.addr[slot]; old.IsValid() && old != ip {
		a.removeHolder(svc.Key, old)
	}
	svc.Ports = slices.Clone(svc.Ports) // the caller may reuse its slice
	rec.addr[slot] = ip
	rec.svc[slot] = svc

	h := a.holdings[ip]
	if h == nil {
		h = &holding{}
		a.holdings[ip] = h
		for _, name := range a.poolNames {
			a.pools[name].addressHeld(ip)
		}
	}
	if i, found := slices.BinarySearch(h.holders, svc.Key); !found {
		h.holders = slices.Insert(h.holders, i, svc.Key)
	}
	if h.sharingKey != svc.SharingKey {
		a.unindexSharing(h.sharingKey, ip)
		h.sharingKey = svc.SharingKey
		a.indexSharing(h.sharingKey, ip)
	}
	if pool != "" && !a.poolContains(h.pool, ip) {
		h.pool = pool
	}
}

// removeHolder drops key from the holders of ip, freeing ip when it was the
// last. The caller updates the service record.
func (a *Allocator) removeHolder(key string, ip netip.Addr) {
	h := a.holdings[ip]
	if h == nil {
		return
	}
	i, found := slices.BinarySearch(h.holders, key)
	if !found {
		return
	}
	h.holders = slices.Delete(h.holders, i, i+1)
	if len(h.holders) > 0 {
		return
	}
	delete(a.holdings, ip)
	a.unindexSharing(h.sharingKey, ip)
	for _, name := range a.poolNames {
		a.pools[name].addressFreed(ip, a.holdings)
	}
}

func (a *Allocator) indexSharing(sharingKey string, ip netip.Addr) {
	if sharingKey == "" {
		return
	}
	addrs := a.sharing[sharingKey]
	if addrs == nil {
		addrs = map[netip.Addr]struct{}{}
		a.sharing[sharingKey] = addrs
	}
	addrs[ip] = struct{}{}
}

func (a *Allocator) unindexSharing(sharingKey string, ip netip.Addr) {
	addrs := a.sharing[sharingKey]
	if addrs == nil {
		return
	}
	delete(addrs, ip)
	if len(addrs) == 0 {
		delete(a.sharing, sharingKey)
	}
}

func (a *Allocator) poolContains(pool string, ip netip.Addr) bool {
	ps := a.pools[pool]
	return ps != nil && ps.members.Contains(ip)
}

// Release frees every address the service key holds. No-op if none.
func (a *Allocator) Release(key string) {
	rec := a.services[key]
	if rec == nil {
		return
	}
	for _, ip := range rec.addr {
		if ip.IsValid() {
			a.removeHolder(key, ip)
		}
	}
	delete(a.services, key)
}

// ReleaseFamily frees the address of the family the service key holds.
// No-op if none.
func (a *Allocator) ReleaseFamily(key string, family Family) {
	slot, ok := family.slot()
	rec := a.services[key]
	if !ok || rec == nil || !rec.addr[slot].IsValid() {
		return
	}
	a.removeHolder(key, rec.addr[slot])
	rec.addr[slot], rec.svc[slot] = netip.Addr{}, Service{}
	if !rec.addr[0].IsValid() && !rec.addr[1].IsValid() {
		delete(a.services, key)
	}
}

// Addresses returns the addresses the service key holds, IPv4 first.
func (a *Allocator) Addresses(key string) []netip.Addr {
	rec := a.services[key]
	if rec == nil {
		return nil
	}
	var addrs []netip.Addr
	for _, ip := range rec.addr {
		if ip.IsValid() {
			addrs = append(addrs, ip)
		}
	}
	return addrs
}

// Holders returns the keys of the services holding ip, sorted.
func (a *Allocator) Holders(ip netip.Addr) []string {
	h := a.holdings[normalize(ip)]
	if h == nil {
		return nil
	}
	return slices.Clone(h.holders)
}

// PoolOf names the pool an address belongs to: the pool it was allocated from
// if it was allocated or assigned through a pool that still contains it,
// otherwise the first pool (by name) containing it; "" when none.
func (a *Allocator) PoolOf(ip netip.Addr) string {
	ip = normalize(ip)
	if h := a.holdings[ip]; h != nil && a.poolContains(h.pool, ip) {
		return h.pool
	}
	for _, name := range a.poolNames {
		if a.pools[name].members.Contains(ip) {
			return name
		}
	}
	return ""
}

// Stats counts one pool's addresses.
type Stats struct {
	AssignedIPv4, AvailableIPv4, AssignedIPv6, AvailableIPv6 int64
}

// Stats counts a pool's addresses: assigned = distinct held addresses inside
// the pool's ranges (a shared address counts once; an address in two
// overlapping pools counts in both); available = addresses Allocate could still
// hand out from the pool: its size (minus .0/.255 when AvoidBuggyIPs) minus the
// assigned addresses among those, saturating at math.MaxInt64 (a /64 has 2^64
// addresses). It reports false for an unknown pool. It costs O(1).
func (a *Allocator) Stats(pool string) (Stats, bool) {
	ps := a.pools[pool]
	if ps == nil {
		return Stats{}, false
	}
	return Stats{
		AssignedIPv4:  ps.assigned[0],
		AvailableIPv4: ps.available(0),
		AssignedIPv6:  ps.assigned[1],
		AvailableIPv6: ps.available(1),
	}, true
}
