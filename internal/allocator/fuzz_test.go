package allocator

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"go4.org/netipx"
)

// FuzzAllocator runs random operation sequences over small pools and checks
// after every step that the allocator agrees with a brute-force model of the
// rules: no forbidden sharing, one address per service and family, exact
// Stats, Orphans and PoolOf, the lowest free address for fresh allocations,
// and no change on error.
func FuzzAllocator(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		runModel(t, data)
	})
}

// TestAllocatorRandomOperations runs the fuzz model on seeded random inputs,
// so every plain `go test` explores long operation sequences too, which the
// coverage-guided fuzzer reaches only slowly.
func TestAllocatorRandomOperations(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	runs := 300
	if testing.Short() {
		runs = 30
	}
	for range runs {
		data := make([]byte, 600)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		runModel(t, data)
	}
}

// runModel decodes data into a pool set and then up to 100 operations,
// checking the invariants after each.
func runModel(t *testing.T, data []byte) {
	m := newModel(t)
	in := fuzzInput{data: data}
	m.setPools(&in)
	m.checkInvariants()
	for step := 0; in.more() && step < 100; step++ {
		m.step(&in)
		m.checkInvariants()
	}
}

// fuzzInput hands out the fuzz bytes, then zeros.
type fuzzInput struct{ data []byte }

func (in *fuzzInput) more() bool { return len(in.data) > 0 }

func (in *fuzzInput) next() byte {
	if len(in.data) == 0 {
		return 0
	}
	b := in.data[0]
	in.data = in.data[1:]
	return b
}

func (in *fuzzInput) pick(n int) int { return int(in.next()) % n }

var (
	fuzzKeys      = []string{"ns/a", "ns/b", "ns/c", "ns/d", "ns/e", "ns/f", "ns/g", "ns/h"}
	fuzzPoolNames = []string{"p0", "p1", "p2", "p3", "p4"} // SetPools uses p0..p3, so p4 is unknown
	fuzzSharing   = []string{"", "x", "y"}
	fuzzSelectors = []string{"", "app=a", "app=b"}
	fuzzPorts     = []Port{{80, "TCP"}, {443, "TCP"}, {80, "UDP"}}
	fuzzV4Base    = netip.MustParseAddr("198.51.100.0").As4()
	fuzzV6Base    = netip.MustParseAddr("2001:db8::").As16()
)

func fuzzAddr(v6 bool, last byte) netip.Addr {
	if v6 {
		a := fuzzV6Base
		a[15] = last
		return netip.AddrFrom16(a)
	}
	a := fuzzV4Base
	a[3] = last
	return netip.AddrFrom4(a)
}

// model is the allocator under test plus what the test knows independently.
type model struct {
	t     *testing.T
	a     *Allocator
	pools []Pool // as the allocator should see them: unique names, later wins
	// snap is each service as it was at its last successful Assign or Allocate
	// of a family: what sharing rules apply to.
	snap map[string][2]Service
	log  []loggedStep // formatted only on failure, to keep executions fast
}

type loggedStep struct {
	format string
	args   []any
}

func (m *model) logf(format string, args ...any) {
	m.log = append(m.log, loggedStep{format, args})
}

func newModel(t *testing.T) *model {
	return &model{t: t, a: New(), snap: map[string][2]Service{}}
}

func (m *model) fatalf(format string, args ...any) {
	m.t.Helper()
	m.t.Fatalf("%s\nsteps:\n%s", fmt.Sprintf(format, args...), joinLines(m.log))
}

func joinLines(steps []loggedStep) string {
	out := ""
	for _, l := range steps {
		out += "  " + fmt.Sprintf(l.format, l.args...) + "\n"
	}
	return out
}

func (m *model) service(in *fuzzInput) Service {
	s := Service{
		Key:            fuzzKeys[in.pick(len(fuzzKeys))],
		SharingKey:     fuzzSharing[in.pick(len(fuzzSharing))],
		ClusterTraffic: in.next()&1 == 1,
		Selector:       fuzzSelectors[in.pick(len(fuzzSelectors))],
	}
	mask := in.next()
	for i, p := range fuzzPorts {
		if mask&(1<<i) != 0 {
			s.Ports = append(s.Ports, p)
		}
	}
	return s
}

func (m *model) step(in *fuzzInput) {
	before := m.holdings()
	// Pools change rarely, so allocations and releases build up state.
	switch op := in.pick(16); {
	case op == 0:
		m.setPools(in)
	case op <= 3:
		m.assign(in, before)
	case op <= 12:
		m.allocate(in, before)
	case op <= 14:
		key := fuzzKeys[in.pick(len(fuzzKeys))]
		m.logf("Release(%s)", key)
		m.a.Release(key)
		delete(m.snap, key)
		if got := m.a.Addresses(key); got != nil {
			m.fatalf("after Release(%s) it holds %v", key, got)
		}
	default:
		key := fuzzKeys[in.pick(len(fuzzKeys))]
		family := IPv4
		if in.next()&1 == 1 {
			family = IPv6
		}
		m.logf("ReleaseFamily(%s, %s)", key, family)
		m.a.ReleaseFamily(key, family)
		s := m.snap[key]
		slot, _ := family.slot()
		s[slot] = Service{}
		m.snap[key] = s
		for _, ip := range m.a.Addresses(key) {
			if FamilyOf(ip) == family {
				m.fatalf("after ReleaseFamily(%s, %s) it holds %s", key, family, ip)
			}
		}
		for _, ip := range before.byKey[key] {
			if FamilyOf(ip) != family && !slices.Contains(m.a.Addresses(key), ip) {
				m.fatalf("ReleaseFamily(%s, %s) also released %s", key, family, ip)
			}
		}
	}
}

// address picks an address in one of the pools three times in four, else
// anywhere in the fuzz space.
func (m *model) address(in *fuzzInput) netip.Addr {
	v6, last := in.next()&1 == 1, in.next()
	if in.next()&3 == 0 || len(m.pools) == 0 {
		return fuzzAddr(v6, last)
	}
	p := m.pools[in.pick(len(m.pools))]
	r := p.Ranges[in.pick(len(p.Ranges))]
	from := r.From().As16()[15]
	size := int(r.To().As16()[15]-from) + 1
	return fuzzAddr(r.From().Is6(), from+byte(int(last)%size))
}

func (m *model) setPools(in *fuzzInput) {
	var pools []Pool
	for range 1 + in.pick(4) {
		p := Pool{Name: fuzzPoolNames[in.pick(4)], AvoidBuggyIPs: in.next()&1 == 1}
		for range 1 + in.pick(3) {
			v6 := in.next()&1 == 1
			start := in.next()
			end := min(int(start)+in.pick(40), 255)
			p.Ranges = append(p.Ranges, netipx.IPRangeFrom(fuzzAddr(v6, start), fuzzAddr(v6, byte(end))))
		}
		pools = append(pools, p)
	}
	m.logf("SetPools(%v)", pools)
	m.a.SetPools(pools)
	m.pools = nil
	for i, p := range pools {
		if !slices.ContainsFunc(pools[i+1:], func(q Pool) bool { return q.Name == p.Name }) {
			m.pools = append(m.pools, p)
		}
	}
}

func (m *model) assign(in *fuzzInput, before holdings) {
	s := m.service(in)
	ip := m.address(in)
	outside := in.next()&1 == 1
	m.logf("Assign(%+v, %s, %v)", s, ip, outside)
	err := m.a.Assign(s, ip, outside)

	slot := familySlot(ip)
	switch wantHolder, inPool := m.firstIncompatible(s, slot, ip, before), m.anyPoolContains(ip); {
	case !inPool && !outside:
		if !errors.Is(err, ErrNotInPool) {
			m.fatalf("Assign of %s outside pools: error %v, want ErrNotInPool", ip, err)
		}
	case wantHolder != "":
		var conflict *ConflictError
		if !errors.As(err, &conflict) || conflict.Holder != wantHolder || conflict.IP != ip {
			m.fatalf("Assign: error %v, want a conflict with %s on %s", err, wantHolder, ip)
		}
	default:
		if err != nil {
			m.fatalf("Assign: unexpected error %v", err)
		}
		m.succeeded(s, slot, ip, before)
		return
	}
	m.checkUnchanged(before)
}

func (m *model) allocate(in *fuzzInput, before holdings) {
	s := m.service(in)
	family := IPv4
	if in.next()&1 == 1 {
		family = IPv6
	}
	// Mostly pools that exist, so that allocations succeed and state builds
	// up; rarely none, or the unknown p4.
	var names []string
	if n := in.pick(8); n > 0 {
		for range 1 + n%3 {
			if i := in.pick(64); i > 0 && len(m.pools) > 0 {
				names = append(names, m.pools[i%len(m.pools)].Name)
			} else {
				names = append(names, "p4")
			}
		}
	}
	m.logf("Allocate(%+v, %s, %q)", s, family, names)
	ip, pool, err := m.a.Allocate(s, family, names)

	want := m.expectAllocate(s, family, names, before)
	if want.err != nil {
		if !errors.Is(err, want.err) {
			m.fatalf("Allocate: error %v, want %v", err, want.err)
		}
		m.checkUnchanged(before)
		return
	}
	if err != nil {
		m.fatalf("Allocate: unexpected error %v, want %s (%s)", err, want.ip, want.why)
	}
	if ip != want.ip {
		m.fatalf("Allocate = %s, want %s (%s)", ip, want.ip, want.why)
	}
	if want.pool != "" && pool != want.pool {
		m.fatalf("Allocate = %s from %q, want from %q (%s)", ip, pool, want.pool, want.why)
	}
	if !slices.Contains(names, pool) || !m.poolContains(pool, ip) {
		m.fatalf("Allocate = %s from %q, which is not a listed pool containing it", ip, pool)
	}
	m.succeeded(s, familySlot(ip), ip, before)
}

type allocation struct {
	ip   netip.Addr
	pool string // "" when any listed pool containing ip will do
	why  string
	err  error
}

// expectAllocate works out by brute force what Allocate must return.
func (m *model) expectAllocate(s Service, family Family, names []string, before holdings) allocation {
	var listed []Pool
	hasFamily := false
	for _, name := range names {
		i := slices.IndexFunc(m.pools, func(p Pool) bool { return p.Name == name })
		if i < 0 {
			return allocation{err: ErrUnknownPool}
		}
		listed = append(listed, m.pools[i])
		for _, r := range m.pools[i].Ranges {
			hasFamily = hasFamily || FamilyOf(r.From()) == family
		}
	}
	switch {
	case len(listed) == 0:
		return allocation{err: ErrPoolsExhausted}
	case !hasFamily:
		return allocation{err: ErrNoFamily}
	}
	slot, _ := family.slot()
	position := func(ip netip.Addr) int {
		return slices.IndexFunc(listed, func(p Pool) bool { return poolHas(p, ip) })
	}
	for _, ip := range before.byKey[s.Key] {
		if FamilyOf(ip) == family && position(ip) >= 0 && m.firstIncompatible(s, slot, ip, before) == "" {
			return allocation{ip: ip, why: "stability"}
		}
	}
	if s.SharingKey != "" {
		var best netip.Addr
		bestPos := -1
		for ip := range before.byAddr {
			pos := position(ip)
			if FamilyOf(ip) != family || pos < 0 || m.firstIncompatible(s, slot, ip, before) != "" {
				continue
			}
			if bestPos < 0 || pos < bestPos || pos == bestPos && ip.Less(best) {
				best, bestPos = ip, pos
			}
		}
		if bestPos >= 0 {
			return allocation{ip: best, why: "sharing"}
		}
	}
	for _, p := range listed {
		var lowest netip.Addr
		for _, r := range p.Ranges {
			if FamilyOf(r.From()) != family {
				continue
			}
			for ip := r.From(); ip.IsValid() && !r.To().Less(ip); ip = ip.Next() {
				if _, held := before.byAddr[ip]; held || p.AvoidBuggyIPs && isBuggy(ip) {
					continue
				}
				if !lowest.IsValid() || ip.Less(lowest) {
					lowest = ip
				}
				break
			}
		}
		if lowest.IsValid() {
			return allocation{ip: lowest, pool: p.Name, why: "lowest free of " + p.Name}
		}
	}
	return allocation{err: ErrPoolsExhausted}
}

// succeeded checks the service's addresses after it got ip and records the
// snapshot sharing will be judged by.
func (m *model) succeeded(s Service, slot int, ip netip.Addr, before holdings) {
	snap := m.snap[s.Key]
	snap[slot] = s
	m.snap[s.Key] = snap
	got := m.a.Addresses(s.Key)
	if !slices.Contains(got, ip) {
		m.fatalf("%s got %s but holds %v", s.Key, ip, got)
	}
	for _, old := range before.byKey[s.Key] {
		if familySlot(old) != slot && !slices.Contains(got, old) {
			m.fatalf("%s lost %s when getting %s", s.Key, old, ip)
		}
	}
}

// firstIncompatible returns the first holder of ip (sorted) that s may not
// share it with, or "".
func (m *model) firstIncompatible(s Service, slot int, ip netip.Addr, before holdings) string {
	for _, key := range before.byAddr[ip] {
		if key != s.Key && !refCompatible(s, m.snap[key][slot]) {
			return key
		}
	}
	return ""
}

// refCompatible restates the sharing rule independently of canShare.
func refCompatible(a, b Service) bool {
	if a.SharingKey == "" || a.SharingKey != b.SharingKey {
		return false
	}
	for _, p := range a.Ports {
		if slices.Contains(b.Ports, p) {
			return false
		}
	}
	nsA, _, _ := strings.Cut(a.Key, "/")
	nsB, _, _ := strings.Cut(b.Key, "/")
	if nsA != nsB && !(slices.Contains(a.SharingNamespaces, nsB) || slices.Contains(a.SharingNamespaces, "*")) {
		return false
	}
	if nsA != nsB && !(slices.Contains(b.SharingNamespaces, nsA) || slices.Contains(b.SharingNamespaces, "*")) {
		return false
	}
	// Traffic policies and backends may differ (Local sharing across
	// backends: the announcers hold endpoints of every Service).
	return true
}

func poolHas(p Pool, ip netip.Addr) bool {
	return slices.ContainsFunc(p.Ranges, func(r netipx.IPRange) bool { return r.Contains(ip) })
}

func (m *model) poolContains(name string, ip netip.Addr) bool {
	return slices.ContainsFunc(m.pools, func(p Pool) bool { return p.Name == name && poolHas(p, ip) })
}

func (m *model) anyPoolContains(ip netip.Addr) bool {
	return slices.ContainsFunc(m.pools, func(p Pool) bool { return poolHas(p, ip) })
}

// holdings is the allocator's state as seen through its query methods.
type holdings struct {
	byKey  map[string][]netip.Addr
	byAddr map[netip.Addr][]string // sorted keys
}

func (m *model) holdings() holdings {
	h := holdings{byKey: map[string][]netip.Addr{}, byAddr: map[netip.Addr][]string{}}
	for _, key := range fuzzKeys { // sorted, so byAddr values are too
		for _, ip := range m.a.Addresses(key) {
			h.byKey[key] = append(h.byKey[key], ip)
			h.byAddr[ip] = append(h.byAddr[ip], key)
		}
	}
	return h
}

func (m *model) checkUnchanged(before holdings) {
	m.t.Helper()
	after := m.holdings()
	for _, key := range fuzzKeys {
		if !slices.Equal(before.byKey[key], after.byKey[key]) {
			m.fatalf("failed operation changed %s from %v to %v", key, before.byKey[key], after.byKey[key])
		}
	}
}

func (m *model) checkInvariants() {
	m.t.Helper()
	h := m.holdings()
	for key, ips := range h.byKey {
		if len(ips) > 2 || len(ips) == 2 && (FamilyOf(ips[0]) != IPv4 || FamilyOf(ips[1]) != IPv6) {
			m.fatalf("%s holds %v: more than one per family or not IPv4 first", key, ips)
		}
	}
	var orphans []string
	for ip, keys := range h.byAddr {
		if got := m.a.Holders(ip); !slices.Equal(got, keys) {
			m.fatalf("Holders(%s) = %v, Addresses say %v", ip, got, keys)
		}
		slot := familySlot(ip)
		for i, k1 := range keys {
			for _, k2 := range keys[i+1:] {
				if !refCompatible(m.snap[k1][slot], m.snap[k2][slot]) {
					m.fatalf("%s is held by %s (%+v) and %s (%+v), which may not share", ip, k1, m.snap[k1][slot], k2, m.snap[k2][slot])
				}
			}
		}
		pool := m.a.PoolOf(ip)
		switch {
		case !m.anyPoolContains(ip):
			orphans = append(orphans, keys...)
			if pool != "" {
				m.fatalf("PoolOf(%s) = %q, but no pool contains it", ip, pool)
			}
		case !m.poolContains(pool, ip):
			m.fatalf("PoolOf(%s) = %q, which does not contain it", ip, pool)
		}
	}
	slices.Sort(orphans)
	orphans = slices.Compact(orphans)
	if got := m.a.Orphans(); !slices.Equal(got, orphans) {
		m.fatalf("Orphans() = %v, want %v", got, orphans)
	}
	for _, p := range m.pools {
		got, ok := m.a.Stats(p.Name)
		if want := bruteStats(p, h); !ok || got != want {
			m.fatalf("Stats(%s) = %+v, %v; brute force says %+v", p.Name, got, ok, want)
		}
	}
	if _, ok := m.a.Stats("p4"); ok {
		m.fatalf("Stats of the unknown pool p4 reported ok")
	}
}

// bruteStats counts p's addresses one by one.
func bruteStats(p Pool, h holdings) Stats {
	var st Stats
	var seen [2][256]bool // fuzz addresses differ only in their last byte
	for _, r := range p.Ranges {
		for ip := r.From(); ip.IsValid() && !r.To().Less(ip); ip = ip.Next() {
			first := &seen[familySlot(ip)][ip.As16()[15]]
			if *first {
				continue
			}
			*first = true
			_, held := h.byAddr[ip]
			assigned, available := &st.AssignedIPv4, &st.AvailableIPv4
			if ip.Is6() {
				assigned, available = &st.AssignedIPv6, &st.AvailableIPv6
			}
			if held {
				*assigned++
			} else if !p.AvoidBuggyIPs || !isBuggy(ip) {
				*available++
			}
		}
	}
	return st
}
