package membership

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/barelb/barelb/internal/testutil"
	"github.com/go-logr/logr/funcr"
)

// detect runs a member in a child process, waits until the survivors list
// it, SIGKILLs it at a random phase of the probe cycle and returns how long
// until no survivor lists it.
//
// Callers reuse one name and port for all kills, as a crash-looping speaker
// would: memberlist counts members declared dead in the last
// GossipToTheDeadTime when it scales suspicion to the cluster size, so a
// new name per kill would slow each detection more than the last. And each
// kill waits until the survivors' health scores are back to 0: a member's
// failed probes that no other member explains (a lone survivor has no one
// to ask) make it probe up to 8 times slower for a while (Lifeguard's local
// health awareness), so back-to-back kills would measure that instead.
func detect(t testing.TB, survivors []*Membership, seedPort int, name string, port int) time.Duration {
	t.Helper()
	c := startChild(t, name, port, seedPort)
	testutil.Eventually(t, 30*time.Second, "survivors list "+name+" and are healthy", func() (bool, string) {
		for i, s := range survivors {
			if !lists(s, name) {
				return false, fmt.Sprintf("survivor %d lists %v", i, s.Members())
			}
			if h := s.list.GetHealthScore(); h > 0 {
				return false, fmt.Sprintf("survivor %d has health score %d", i, h)
			}
		}
		return true, ""
	})
	time.Sleep(rand.N(testTiming(t).ProbeInterval))
	c.kill()
	return elapsedUntil(t, 30*time.Second, "the survivors to drop "+name+" after SIGKILL", func() bool {
		for _, s := range survivors {
			if lists(s, name) {
				return false
			}
		}
		return true
	})
}

// TestCrashDetection: a SIGKILLed member is dropped by the others. The bound
// asserted is generous so a loaded machine does not fail the test; the
// numbers are logged, and BenchmarkDetection reports them.
func TestCrashDetection(t *testing.T) {
	reps := 10
	if testing.Short() {
		reps = 3
	}
	a, pa := startMember(t, "a", memberOpts{})
	b, _ := startMember(t, "b", memberOpts{})
	join(t, b, pa)
	var ds []time.Duration
	port := freePort(t)
	for i := range reps {
		d := detect(t, []*Membership{a, b}, pa, "victim", port)
		ds = append(ds, d)
		if d > 5*time.Second {
			t.Errorf("kill %d: detected after %v, want < 5s", i, d)
		}
	}
	t.Logf("SIGKILL detection over %d kills: median %v, worst %v, all %v",
		reps, median(ds).Round(time.Millisecond), slices.Max(ds).Round(time.Millisecond), roundAll(ds))
	if ok, _ := sees([]*Membership{a, b}, "a", "b")(); !ok {
		t.Errorf("survivors see %v and %v, want a, b", a.Members(), b.Members())
	}
}

// BenchmarkDetection reports the time from the failure of a member until
// no other member lists it, one failure per iteration: SIGKILL with two
// survivors (a three-member cluster) and with one (a pair, where no other
// member can confirm a suspicion), and the member's node cut off (every
// packet dropped, in network namespaces; needs root) with two survivors:
//
//	go test -run '^$' -bench Detection -benchtime 20x ./internal/membership/
func BenchmarkDetection(b *testing.B) {
	report := func(b *testing.B, ds []time.Duration) {
		b.ReportMetric(float64(median(ds).Microseconds())/1000, "ms/detection")
		b.ReportMetric(float64(slices.Max(ds).Microseconds())/1000, "worst-ms")
		b.ReportMetric(float64(slices.Min(ds).Microseconds())/1000, "best-ms")
	}
	for _, survivors := range []int{2, 1} {
		b.Run(fmt.Sprintf("kill/survivors=%d", survivors), func(b *testing.B) {
			var ms []*Membership
			var seed int
			for i := range survivors {
				m, p := startMember(b, fmt.Sprintf("s%d", i), memberOpts{})
				if i == 0 {
					seed = p
				} else {
					join(b, m, seed)
				}
				ms = append(ms, m)
			}
			var ds []time.Duration
			port := freePort(b)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ds = append(ds, detect(b, ms, seed, "victim", port))
			}
			report(b, ds)
		})
	}
	b.Run("cut/survivors=2", func(b *testing.B) {
		report(b, cutDetections(b, b.N))
	})
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// suspicionCounter counts memberlist's suspicion-related log lines.
type suspicionCounter struct {
	suspect, refute, failed atomic.Int64
}

func (c *suspicionCounter) logFunc(_, args string) {
	switch {
	case strings.Contains(args, "Suspect ") && strings.Contains(args, "has failed"):
		c.suspect.Add(1)
	case strings.Contains(args, "Refuting"):
		c.refute.Add(1)
	case strings.Contains(args, "Marking") && strings.Contains(args, "as failed"):
		c.failed.Add(1)
	}
}

// soakDuration is 20s, BARELB_SOAK (a Go duration) if set, 3s with -short.
func soakDuration(t *testing.T) time.Duration {
	if s := os.Getenv("BARELB_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("BARELB_SOAK: %v", err)
		}
		return d
	}
	if testing.Short() {
		return 3 * time.Second
	}
	return 20 * time.Second
}

// TestNoFlapping: with both cores kept busy by spinning goroutines in the
// same process (which delays every memberlist goroutine behind them), the
// set of three healthy members never changes. BARELB_SOAK_LOAD=process
// spins in child processes instead (the OS scheduler, as on a busy node).
//
//	BARELB_SOAK=10m go test -run NoFlapping -timeout 15m -v ./internal/membership/
func TestNoFlapping(t *testing.T) {
	d := soakDuration(t)
	var counter suspicionCounter
	lg := funcr.New(counter.logFunc, funcr.Options{Verbosity: 1})
	names := []string{"a", "b", "c"}
	var ms []*Membership
	var seed int
	for i, n := range names {
		m, p := startMember(t, n, memberOpts{logger: &lg})
		if i == 0 {
			seed = p
		} else {
			join(t, m, seed)
		}
		ms = append(ms, m)
	}
	testutil.Eventually(t, 15*time.Second, "all see a, b, c", sees(ms, names...))
	for _, m := range ms {
		drain(m.Changes())
	}

	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	spinners := 2 * runtime.GOMAXPROCS(0)
	load := "goroutines"
	if os.Getenv("BARELB_SOAK_LOAD") == "process" {
		load = "processes"
		for range spinners {
			burn := startBurner(t)
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-ctx.Done()
				burn.kill()
			}()
		}
	} else {
		for range spinners {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					spin()
				}
			}()
		}
	}

	stalls := watchStalls(ctx, &wg)
	// An episode starts when some member stops seeing all three.
	type episode struct {
		at   time.Time
		what string
	}
	var episodes []episode
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	inEpisode := false
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-tick.C:
		case <-ms[0].Changes():
		case <-ms[1].Changes():
		case <-ms[2].Changes():
		}
		var what []string
		for i, m := range ms {
			if got := m.Members(); !slices.Equal(got, names) {
				what = append(what, fmt.Sprintf("%s sees %v", names[i], got))
			}
		}
		if len(what) > 0 && !inEpisode {
			episodes = append(episodes, episode{time.Now(), strings.Join(what, ", ")})
		}
		inEpisode = len(what) > 0
	}
	wg.Wait()
	st := stalls.sorted()
	t.Logf("%v with %d spinning %s on GOMAXPROCS=%d: %d suspicions, %d refutations, %d declared failed, %d alive-set changes; goroutine wake-up lateness p50 %v, p99 %v, max %v",
		d, spinners, load, runtime.GOMAXPROCS(0), counter.suspect.Load(), counter.refute.Load(), counter.failed.Load(), len(episodes),
		st[len(st)/2].Round(time.Millisecond), st[len(st)*99/100].Round(time.Millisecond), st[len(st)-1].Round(time.Millisecond))

	// A member whose goroutines wait longer than a probe interval for a
	// CPU can miss a probe and then its refutation: declaring it dead is
	// the detector doing its job, and the machine (loaded far beyond the
	// test's own spinners) is to blame. A change without such a stall in
	// the 3 s before it is a flap.
	tolerated := testTiming(t).ProbeInterval
	var flaps, excused []string
	for _, e := range episodes {
		stall := stalls.maxBetween(e.at.Add(-3*time.Second), e.at.Add(500*time.Millisecond))
		desc := fmt.Sprintf("%v: %s (worst stall before: %v)", e.at.Sub(start).Round(time.Millisecond), e.what, stall.Round(time.Millisecond))
		if stall >= tolerated {
			excused = append(excused, desc)
		} else {
			flaps = append(flaps, desc)
		}
	}
	if len(excused) > 0 {
		t.Logf("changes after stalls >= ProbeInterval %v (not counted): %v", tolerated, excused)
	}
	if len(flaps) > 0 {
		t.Errorf("alive set changed under load without a stall to explain it: %v", flaps)
	}
}

// stallWatch measures how late a goroutine sleeping 10 ms wakes up, a proxy
// for how long memberlist's goroutines wait for a CPU.
type stallWatch struct {
	samples []stallSample // read after the watching goroutine is done
}

type stallSample struct {
	end  time.Time
	late time.Duration
}

func watchStalls(ctx context.Context, wg *sync.WaitGroup) *stallWatch {
	w := &stallWatch{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			t0 := time.Now()
			time.Sleep(10 * time.Millisecond)
			now := time.Now()
			w.samples = append(w.samples, stallSample{now, now.Sub(t0) - 10*time.Millisecond})
		}
	}()
	return w
}

func (w *stallWatch) sorted() []time.Duration {
	out := []time.Duration{0}
	for _, s := range w.samples {
		out = append(out, s.late)
	}
	slices.Sort(out)
	return out
}

// maxBetween is the worst lateness of a sleep that ended between from and to.
func (w *stallWatch) maxBetween(from, to time.Time) time.Duration {
	var m time.Duration
	for _, s := range w.samples {
		if !s.end.Before(from) && !s.end.After(to) {
			m = max(m, s.late)
		}
	}
	return m
}

// TestRejoinAfterRestart: a member that comes back under the same name is
// listed again, however it went away.
func TestRejoinAfterRestart(t *testing.T) {
	tests := []struct {
		name string
		// leave: c leaves before it stops; waitDead: c restarts only once
		// a and b dropped it; newPort: c restarts on another port.
		leave, waitDead, newPort bool
	}{
		{name: "crash, restart before detection, same address"},
		{name: "crash, restart after detection, same address", waitDead: true},
		{name: "crash, restart after detection, new address", waitDead: true, newPort: true},
		{name: "leave, restart, same address", leave: true, waitDead: true},
		{name: "leave, restart, new address", leave: true, waitDead: true, newPort: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, pa := startMember(t, "a", memberOpts{})
			b, _ := startMember(t, "b", memberOpts{})
			c, pc := startMember(t, "c", memberOpts{})
			join(t, b, pa)
			join(t, c, pa)
			testutil.Eventually(t, 15*time.Second, "all see a, b, c", sees([]*Membership{a, b, c}, "a", "b", "c"))

			if tt.leave {
				if err := c.Leave(time.Second); err != nil {
					t.Fatal(err)
				}
			}
			// Shutdown without Leave is a crash as far as the others can
			// tell: the sockets close and nothing is said.
			if err := c.Shutdown(); err != nil {
				t.Fatal(err)
			}
			if tt.waitDead {
				// Until memberlist itself declares c dead (the fast
				// path drops it from Members sooner), memberlist
				// refuses c's name from another address.
				testutil.Eventually(t, 15*time.Second, "memberlist on a and b declares c dead", func() (bool, string) {
					la, lb := memberlistLists(a, "c"), memberlistLists(b, "c")
					return !la && !lb, fmt.Sprintf("a lists c: %v, b lists c: %v", la, lb)
				})
			}
			drain(a.Changes())
			port := pc
			if tt.newPort {
				port = 0
			}
			start := time.Now()
			c2, _ := startMember(t, "c", memberOpts{port: port})
			join(t, c2, pa)
			testutil.Eventually(t, 15*time.Second, "all see a, b, c again", sees([]*Membership{a, b, c2}, "a", "b", "c"))
			t.Logf("listed again by all %v after restart", time.Since(start).Round(time.Millisecond))
			// It must stay listed: nothing about the old incarnation (a
			// suspicion, a dead or left message) may win over the new one.
			end := time.Now().Add(1500 * time.Millisecond)
			for time.Now().Before(end) {
				if ok, _ := sees([]*Membership{a, b, c2}, "a", "b", "c")(); !ok {
					t.Fatalf("c dropped again: a %v, b %v, c %v", a.Members(), b.Members(), c2.Members())
				}
				time.Sleep(5 * time.Millisecond)
			}
			if tt.waitDead {
				select {
				case <-a.Changes():
				default:
					t.Error("Changes did not fire on a for the rejoin")
				}
			}
		})
	}
}

// TestRejoinAfterKill: the same for a real process, SIGKILLed and started
// again at once with the same name and address.
func TestRejoinAfterKill(t *testing.T) {
	a, pa := startMember(t, "a", memberOpts{})
	b, _ := startMember(t, "b", memberOpts{})
	join(t, b, pa)
	port := freePort(t)
	c := startChild(t, "c", port, pa)
	testutil.Eventually(t, 15*time.Second, "all see c", sees([]*Membership{a, b}, "a", "b", "c"))
	c.kill()
	start := time.Now()
	startChild(t, "c", port, pa) // READY means it sees another member
	testutil.Eventually(t, 15*time.Second, "a and b list c again", sees([]*Membership{a, b}, "a", "b", "c"))
	t.Logf("restarted c listed by a and b %v after its SIGKILL", time.Since(start).Round(time.Millisecond))
	// It must stay listed: the old incarnation's suspicion must not win.
	end := time.Now().Add(2 * time.Second)
	for time.Now().Before(end) {
		if !lists(a, "c") || !lists(b, "c") {
			t.Fatalf("restarted c dropped: a %v, b %v", a.Members(), b.Members())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
