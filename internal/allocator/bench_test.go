package allocator

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	"go4.org/netipx"
)

var benchPools = []struct {
	name   string
	prefix string
	family Family
}{
	{"ipv4-65536", "10.0.0.0/16", IPv4},
	{"ipv6-64", "2001:db8::/64", IPv6},
}

func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("bench/svc-%d", i)
	}
	return keys
}

// fillAllocator returns an allocator with one pool in which each of keys holds
// one address.
func fillAllocator(b *testing.B, prefix string, family Family, keys []string) *Allocator {
	b.Helper()
	a := New()
	a.SetPools([]Pool{{Name: "bench", Ranges: []netipx.IPRange{netipx.RangeOfPrefix(netip.MustParsePrefix(prefix))}}})
	for _, key := range keys {
		if _, _, err := a.Allocate(Service{Key: key}, family, []string{"bench"}); err != nil {
			b.Fatalf("filling: %v", err)
		}
	}
	return a
}

// BenchmarkAllocate measures one Release plus one Allocate with `used`
// addresses held throughout. Services are released in a scattered order, so
// the freed addresses lie anywhere below the cursor and Allocate must find
// the lowest one. The cost should not depend on used or on the pool size.
func BenchmarkAllocate(b *testing.B) {
	for _, bp := range benchPools {
		for _, used := range []int{1000, 60000} {
			b.Run(fmt.Sprintf("%s/used=%d", bp.name, used), func(b *testing.B) {
				keys := benchKeys(used)
				a := fillAllocator(b, bp.prefix, bp.family, keys)
				pools := []string{"bench"}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					key := keys[(i*7919)%used] // 7919 is prime, so this visits every key
					i++
					a.Release(key)
					if _, _, err := a.Allocate(Service{Key: key}, bp.family, pools); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkMemory reports the heap the allocator uses per held address, for
// 60,000 addresses held in a /16 and in a /64: the two should be about equal,
// showing memory follows addresses used, not pool size. Its ns/op is the time
// to fill the pool.
func BenchmarkMemory(b *testing.B) {
	const used = 60000
	for _, bp := range benchPools {
		b.Run(fmt.Sprintf("%s/used=%d", bp.name, used), func(b *testing.B) {
			keys := benchKeys(used) // the caller's strings, not the allocator's memory
			var perAddr float64
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				a := fillAllocator(b, bp.prefix, bp.family, keys)
				runtime.GC()
				runtime.ReadMemStats(&after)
				perAddr = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / used
				runtime.KeepAlive(a)
			}
			b.ReportMetric(perAddr, "B/addr")
		})
	}
}
