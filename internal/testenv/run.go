package testenv

import (
	"context"
	"testing"
)

// Run starts run (a manager's or a runnable's Start) in the background with a
// context that ends with the test, and waits at the end of the test until run
// has returned. Without the wait a runnable that logs through the test's
// logger (testr) while it stops logs after the test has completed, which the
// testing package turns into a panic of the whole test binary.
//
// The returned function stops run early and waits for it; it is safe to call
// more than once.
func Run(t testing.TB, ctx context.Context, run func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := run(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("runnable stopped: %v", err)
		}
	}()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}
