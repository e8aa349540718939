package startuppages

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/go-logr/logr"
)

// Options of Run.
type Options struct {
	// Interval between releases after the first: pages of code that ran
	// once since (a relist, a rare error path) go back too. 0 releases
	// once.
	Interval time.Duration
	// Settle, when positive, adds a release once a burst of work is over:
	// Settle after the last second in which the program allocated more
	// than settleQuietRate, once it has allocated at least settleBurst
	// since the previous release. Without it, what a burst left resident
	// would stay until the next periodic release.
	Settle time.Duration
	// FreeHeap also returns the Go heap's free pages to the system first
	// (debug.FreeOSMemory: a collection, then every free page): the
	// runtime's scavenger would return them over minutes, or keep a few
	// MiB for the next burst of allocations, which a program that mostly
	// waits does not need kept. The collection runs before the release,
	// so that the pages it reads (stack maps of every goroutine) go too.
	FreeHeap bool
	// KeepProgram leaves the program's own pages alone: only the heap is
	// freed (FreeHeap). Dropping them lowers VmRSS but not anonymous
	// memory (RssAnon) or the peak, so programs opt in to it.
	KeepProgram bool
	// Log gets one line per release with the resident memory before and
	// after.
	Log logr.Logger
}

// Run releases the program's pages (and with FreeHeap the heap's free
// pages) now, then every o.Interval and after
// each burst of work (o.Settle) until ctx ends. A failure is logged, not
// returned: the program works the same with its pages resident. The first
// release is logged at level 0, the later ones at 1.
func Run(ctx context.Context, o Options) {
	releaseAndLog(o.Log, o)
	if o.Interval <= 0 && o.Settle <= 0 {
		return
	}
	var periodic <-chan time.Time
	if o.Interval > 0 {
		ticker := time.NewTicker(o.Interval)
		defer ticker.Stop()
		periodic = ticker.C
	}
	var samples <-chan time.Time
	watch := settleWatch{settle: o.Settle, burst: settleBurst, quietRate: settleQuietRate}
	if o.Settle > 0 {
		ticker := time.NewTicker(time.Second)
		defer ticker.Stop()
		samples = ticker.C
		watch.released(time.Now(), heapAllocated())
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-periodic:
		case now := <-samples:
			if !watch.sample(now, heapAllocated()) {
				continue
			}
		}
		releaseAndLog(o.Log.V(1), o)
		if samples != nil {
			watch.released(time.Now(), heapAllocated())
		}
	}
}

const (
	// settleBurst is the allocation since the last release that makes a
	// burst: a wave of plans allocates hundreds of MiB, the tail of a wave
	// of status writes tens; a metrics scrape about 2 MiB (its gzip
	// writer), so scrapes alone reach it only when several come within a
	// periodic release's interval, and then one more release is cheap (a
	// collection of a 15 MiB heap).
	settleBurst = 16 << 20
	// settleQuietRate is the allocation rate, per second, below which the
	// program counts as quiet: a speaker that only gossips and answers ARP
	// allocates a few KiB per second.
	settleQuietRate = 1 << 20
)

// heapAllocated is the Go heap's cumulative count of allocated bytes.
func heapAllocated() uint64 {
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return sample[0].Value.Uint64()
}

func releaseAndLog(log logr.Logger, o Options) {
	before, err := ResidentSet()
	if err != nil {
		log.Error(err, "Not releasing the program's start-up pages")
		return
	}
	if o.FreeHeap {
		debug.FreeOSMemory()
	}
	var covered uint64
	if !o.KeepProgram {
		covered, err = Release()
		if err != nil {
			log.Error(err, "Releasing the program's start-up pages failed")
			return
		}
	}
	after, err := ResidentSet()
	if err != nil {
		log.Error(err, "Reading the resident memory after releasing the program's pages")
		return
	}
	log.Info("Released memory not in use", "heap", o.FreeHeap, "program", !o.KeepProgram, "mappedMiB", mib(covered),
		"residentMiB", mib(before.Total), "nowResidentMiB", mib(after.Total), "programMiB", mib(before.File), "nowProgramMiB", mib(after.File),
		"anonymousMiB", mib(before.Anonymous), "nowAnonymousMiB", mib(after.Anonymous))
}

func mib(bytes uint64) float64 { return float64(bytes*10/(1<<20)) / 10 }
