package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/go-logr/logr"
)

// BenchmarkSpeakerMemory measures what the Speaker keeps for 10,000
// routes (BARELB_ROUTES) sent to 1 and to 4 peers, in process and without
// a router (the peers are ports on loopback where nothing answers: what
// is measured is the RIB, not the updates in flight; e2etest/bgp's
// BenchmarkBGPScale measures the whole speaker against FRR). It reports
// the live heap after a collection (heap-MiB) and the process's RssAnon
// (anon-MiB, the test binary included). Setting the routes is timed
// (ns/op).
//
//	go test -run='^$' -bench=SpeakerMemory -benchtime=1x ./internal/bgp/
func BenchmarkSpeakerMemory(b *testing.B) {
	n := 10000
	if s := os.Getenv("BARELB_ROUTES"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			b.Fatalf("BARELB_ROUTES %q: want a positive number", s)
		}
	}
	for _, peers := range []int{1, 4} {
		b.Run(fmt.Sprintf("peers=%d", peers), func(b *testing.B) {
			ctx := context.Background()
			var ps []Peer
			routes := map[string][]Route{}
			for i := range peers {
				name := fmt.Sprintf("p%d", i)
				ps = append(ps, Peer{Name: name, Address: netip.AddrFrom4([4]byte{127, 0, 0, byte(1 + i)}), Port: 9, ASN: 64501})
				for j := range n {
					a := netip.AddrFrom4([4]byte{198, 18, byte(j >> 8), byte(j)})
					routes[name] = append(routes[name], Route{Prefix: netip.PrefixFrom(a, 32), LocalPref: 100})
				}
			}
			before := liveHeap()
			var sp *Speaker
			for range b.N {
				if sp != nil {
					_ = sp.Stop(ctx)
				}
				sp = New(Options{RouterID: netip.MustParseAddr("192.0.2.1"), ASN: 64500, Logger: logr.Discard()})
				if err := sp.Start(ctx); err != nil {
					b.Fatal(err)
				}
				if err := sp.SetPeers(ctx, ps); err != nil {
					b.Fatal(err)
				}
				if err := sp.SetRoutes(ctx, routes); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			heap := liveHeap() - before
			anon := rssAnon(b)
			b.Logf("%d routes to %d peers: live heap %.1f MiB more than before, process RssAnon %.1f MiB", n, peers, heap, anon)
			b.ReportMetric(heap, "heap-MiB")
			b.ReportMetric(anon, "anon-MiB")
			_ = sp.Stop(ctx)
		})
	}
}

// liveHeap is the heap in use after a collection, in MiB.
func liveHeap() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / (1 << 20)
}

func rssAnon(b *testing.B) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}
