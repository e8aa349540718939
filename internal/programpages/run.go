package programpages

import (
	"context"
	"runtime/debug"
	"time"

	"github.com/go-logr/logr"
)

// Options of Run.
type Options struct {
	// Interval between releases after the first: pages of code that ran
	// once since (a relist, a rare error path) go back too. 0 releases
	// once.
	Interval time.Duration
	// FreeHeap also returns the Go heap's free pages to the system first
	// (debug.FreeOSMemory: a collection, then every free page): the
	// runtime's scavenger would return them over minutes, or keep a few
	// MiB for the next burst of allocations, which a program that mostly
	// waits does not need kept. The collection runs before the release,
	// so that the pages it reads (stack maps of every goroutine) go too.
	FreeHeap bool
	// Log gets one line per release with the resident memory before and
	// after.
	Log logr.Logger
}

// Run releases the program's pages now, then every o.Interval until ctx
// ends. A failure is logged, not returned: the program works the same
// with its pages resident. The first release is logged at level 0, the
// later ones at 1.
func Run(ctx context.Context, o Options) {
	for log := o.Log; ; log = o.Log.V(1) {
		releaseAndLog(log, o.FreeHeap)
		if o.Interval <= 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(o.Interval):
		}
	}
}

func releaseAndLog(log logr.Logger, freeHeap bool) {
	before, err := ResidentSet()
	if err != nil {
		log.Error(err, "Not releasing the program's start-up pages")
		return
	}
	if freeHeap {
		debug.FreeOSMemory()
	}
	covered, err := Release()
	if err != nil {
		log.Error(err, "Releasing the program's start-up pages failed")
		return
	}
	after, err := ResidentSet()
	if err != nil {
		log.Error(err, "Reading the resident memory after releasing the program's pages")
		return
	}
	log.Info("Released the program's pages not in use", "mappedMiB", mib(covered),
		"residentMiB", mib(before.Total), "nowResidentMiB", mib(after.Total), "programMiB", mib(before.File), "nowProgramMiB", mib(after.File),
		"anonymousMiB", mib(before.Anonymous), "nowAnonymousMiB", mib(after.Anonymous))
}

func mib(bytes uint64) float64 { return float64(bytes*10/(1<<20)) / 10 }
