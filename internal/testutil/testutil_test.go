package testutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// recorder is a testing.TB that records failures instead of failing
// (Fatalf ends the goroutine as the real one does).
type recorder struct {
	testing.TB
	failed []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.failed = append(r.failed, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	panic(r)
}

// run calls f with a recorder and returns what it reported.
func run(t *testing.T, f func(tb *recorder)) []string {
	t.Helper()
	r := &recorder{TB: t}
	func() {
		defer func() {
			if p := recover(); p != nil && p != r {
				panic(p)
			}
		}()
		f(r)
	}()
	return r.failed
}

func TestEventually(t *testing.T) {
	n := 0
	Eventually(t, time.Second, "the third call", func() (bool, string) {
		n++
		return n == 3, fmt.Sprint(n)
	})
	if n != 3 {
		t.Errorf("cond ran %d times, want 3", n)
	}
	failed := run(t, func(tb *recorder) {
		Eventually(tb, 120*time.Millisecond, "never", func() (bool, string) { return false, "still no" })
	})
	if len(failed) != 1 || !strings.Contains(failed[0], "waiting for never: still no") {
		t.Errorf("failures = %q, want one naming what and the last word", failed)
	}
}

func TestNoError(t *testing.T) {
	if ok, last := NoError(func() error { return nil })(); !ok || last != "" {
		t.Errorf("nil error: %v, %q; want true, \"\"", ok, last)
	}
	if ok, last := NoError(func() error { return errors.New("not yet") })(); ok || last != "not yet" {
		t.Errorf("error: %v, %q; want false, \"not yet\"", ok, last)
	}
}

func TestGolden(t *testing.T) {
	path := filepath.Join(t.TempDir(), "testdata", "out.txt")
	if failed := run(t, func(tb *recorder) { Golden(tb, path, []byte("a\n")) }); len(failed) != 1 || !strings.Contains(failed[0], "-update") {
		t.Errorf("missing file: failures = %q, want one saying -update", failed)
	}
	*update = true
	Golden(t, path, []byte("a\nb\n"))
	*update = false
	if b, err := os.ReadFile(path); err != nil || string(b) != "a\nb\n" {
		t.Fatalf("after -update the file holds %q (%v)", b, err)
	}
	Golden(t, path, []byte("a\nb\n"))
	failed := run(t, func(tb *recorder) { Golden(tb, path, []byte("a\nc\n")) })
	if len(failed) != 1 || !strings.Contains(failed[0], "(-want +got)") || !strings.Contains(failed[0], `a\nb`) || !strings.Contains(failed[0], `a\nc`) {
		t.Errorf("difference: failures = %q, want a -want +got diff", failed)
	}
}
