package statuswrite

import (
	"context"
	"sync"
	"time"

	"github.com/go-logr/logr"
)

// DefaultRetry is the pause before another pass after one that failed or
// met a stale cache.
const DefaultRetry = time.Second

// DefaultRecheck is how often a pass runs without a new wish, to write
// back what someone else changed: a status another speaker overwrote or
// deleted, or a request of this one's that a frozen API server took in
// long ago and ran only when it came back, after newer ones. A pass
// writes only what differs from the cache, so a recheck of statuses that
// say what they should costs a walk over the cache and no request.
const DefaultRecheck = 2 * time.Second

// Loop runs Pass with the latest wish Set gave it.
type Loop[T any] struct {
	// Pass writes what want says. again asks for another pass after
	// Retry without an error (a write met a stale cache).
	Pass func(ctx context.Context, want T) (again bool, err error)
	// Retry is DefaultRetry when zero, Recheck DefaultRecheck.
	Retry, Recheck time.Duration
	Log            logr.Logger
	// What names the objects written, for the log.
	What string

	mu    sync.Mutex
	want  T
	given bool
	wake  chan struct{}
	once  sync.Once
}

func (l *Loop[T]) init() { l.once.Do(func() { l.wake = make(chan struct{}, 1) }) }

// Set replaces the wish; a pass under way finishes first.
func (l *Loop[T]) Set(want T) {
	l.init()
	l.mu.Lock()
	l.want, l.given = want, true
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Run makes passes until ctx ends: one after each Set, another after
// Retry while the last one failed or asked for it, and one every Recheck.
func (l *Loop[T]) Run(ctx context.Context) {
	l.init()
	wait := l.Retry
	if wait <= 0 {
		wait = DefaultRetry
	}
	every := l.Recheck
	if every <= 0 {
		every = DefaultRecheck
	}
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	recheck := time.NewTicker(every)
	defer recheck.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.wake:
		case <-retry.C:
		case <-recheck.C:
		}
		l.mu.Lock()
		want, given := l.want, l.given
		l.mu.Unlock()
		if !given {
			continue // no plan yet
		}
		again, err := l.Pass(ctx, want)
		if err != nil && ctx.Err() == nil {
			l.Log.Error(err, "writing "+l.What+"; retrying", "in", wait.String())
		}
		if again || err != nil {
			retry.Reset(wait)
		}
	}
}
