package testutil

import (
	"testing"
	"time"
)

// PollInterval is how often Eventually checks its condition.
const PollInterval = 50 * time.Millisecond

// Eventually polls cond every PollInterval until it holds, and fails the
// test when timeout passes first, with cond's last word on what it saw
// (say what was observed, so that a failure explains itself).
func Eventually(tb testing.TB, timeout time.Duration, what string, cond func() (ok bool, last string)) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("after %v still waiting for %s: %s", timeout, what, last)
		}
		time.Sleep(PollInterval)
	}
}

// NoError turns a check that returns an error into a condition for
// Eventually: it holds when check returns nil, and the error is the last
// word.
func NoError(check func() error) func() (bool, string) {
	return func() (bool, string) {
		if err := check(); err != nil {
			return false, err.Error()
		}
		return true, ""
	}
}
