package startuppages

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
)

func TestSettleWatch(t *testing.T) {
	const (
		kib = 1 << 10
		mib = 1 << 20
	)
	// Each step is one sample, a second after the previous one, with the
	// bytes allocated during that second.
	for _, tc := range []struct {
		name  string
		steps []uint64
		// want is the index of the first step that settles, -1 for none.
		want int
	}{
		{name: "quiet from the start", steps: []uint64{0, 2 * kib, 2 * kib, 2 * kib, 2 * kib, 2 * kib, 2 * kib, 2 * kib}, want: -1},
		{name: "burst then quiet", steps: []uint64{0, 40 * mib, 40 * mib, 2 * kib, 2 * kib, 2 * kib, 2 * kib, 2 * kib}, want: 7},
		{name: "burst, a busy second, then quiet", steps: []uint64{0, 80 * mib, 2 * kib, 2 * kib, 3 * mib, 2 * kib, 2 * kib, 2 * kib, 2 * kib, 2 * kib, 2 * kib}, want: 9},
		{name: "a scrape is no burst", steps: []uint64{0, 2 * mib, 2 * kib, 2 * kib, 2 * kib, 2 * kib, 2 * kib, 2 * kib}, want: -1},
		{name: "still busy", steps: []uint64{0, 40 * mib, 40 * mib, 40 * mib, 40 * mib, 40 * mib, 40 * mib, 40 * mib}, want: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := settleWatch{settle: 5 * time.Second, burst: 64 * mib, quietRate: mib}
			now := time.Unix(1_700_000_000, 0)
			var total uint64
			got := -1
			for i, bytes := range tc.steps {
				total += bytes
				if w.sample(now.Add(time.Duration(i)*time.Second), total) && got < 0 {
					got = i
				}
			}
			if got != tc.want {
				t.Errorf("settled at step %d, want %d", got, tc.want)
			}
		})
	}
}

// TestSettleWatchAfterRelease: a release, periodic or not, starts the
// count of the next burst from nothing.
func TestSettleWatchAfterRelease(t *testing.T) {
	w := settleWatch{settle: 2 * time.Second, burst: 100, quietRate: 10}
	now := time.Unix(1_700_000_000, 0)
	at := func(s int) time.Time { return now.Add(time.Duration(s) * time.Second) }
	w.sample(at(0), 0)
	w.sample(at(1), 500)
	w.released(at(2), 500)
	for s := 3; s < 10; s++ {
		if w.sample(at(s), 500) {
			t.Fatalf("settled at %ds with nothing allocated since the release", s)
		}
	}
	w.sample(at(10), 700)
	if w.sample(at(11), 700) {
		t.Fatal("settled 1s after the burst, want 2s")
	}
	if !w.sample(at(12), 700) {
		t.Fatal("not settled 2s after a burst")
	}
}

// TestRunSettles: Run releases once a burst of allocation is over, with no
// periodic release to do it.
func TestRunSettles(t *testing.T) {
	releases := make(chan string, 10)
	log := funcr.New(func(_, args string) { releases <- args }, funcr.Options{Verbosity: 1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, Options{Settle: time.Second, Log: log})
	}()
	defer func() { cancel(); <-done }()
	wait := func(what string, d time.Duration) string {
		t.Helper()
		select {
		case line := <-releases:
			return line
		case <-time.After(d):
			t.Fatalf("no release %s within %v", what, d)
			return ""
		}
	}
	wait("at the start", 10*time.Second)
	select {
	case line := <-releases:
		t.Fatalf("a release with no burst: %s", line)
	case <-time.After(2500 * time.Millisecond):
	}
	for range 100 { // 100 MiB of garbage
		runtime.KeepAlive(make([]byte, 1<<20))
	}
	start := time.Now()
	line := wait("after the burst", 10*time.Second)
	t.Logf("released %v after the burst: %s", time.Since(start).Round(time.Millisecond), line)
}
