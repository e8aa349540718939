package membership

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/barelb/barelb/internal/testutil"
)

func TestWatchedBy(t *testing.T) {
	ap := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), port) }
	members := func(names ...string) map[string]netip.AddrPort {
		m := map[string]netip.AddrPort{}
		for i, n := range names {
			m[n] = ap(uint16(7000 + i))
		}
		return m
	}
	for _, tc := range []struct {
		name    string
		self    string
		members map[string]netip.AddrPort
		want    []string
	}{
		{"alone", "a", members("a"), nil},
		{"a pair watch each other", "b", members("a", "b"), []string{"a"}},
		{"four: every other one", "b", members("a", "b", "c", "d"), []string{"a", "c", "d"}},
		{"the next three in name order", "b", members("a", "b", "c", "d", "e", "f"), []string{"c", "d", "e"}},
		{"wrapping around", "e", members("a", "b", "c", "d", "e", "f"), []string{"a", "b", "f"}},
		{"self not yet listed", "c", members("a", "b", "d", "e", "f"), []string{"d", "e", "f"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := watchedBy(tc.self, tc.members)
			var names []string
			for n, a := range got {
				if a != tc.members[n] {
					t.Errorf("%s at %v, want %v", n, a, tc.members[n])
				}
				names = append(names, n)
			}
			slices.Sort(names)
			if diff := cmp.Diff(tc.want, names); diff != "" {
				t.Errorf("watched (-want +got):\n%s", diff)
			}
		})
	}
	// Every member is watched by min(fanout, others) members.
	all := members("n01", "n02", "n03", "n04", "n05", "n06", "n07", "n08", "n09", "n10")
	by := map[string]int{}
	for self := range all {
		for n := range watchedBy(self, all) {
			by[n]++
		}
	}
	for n := range all {
		if by[n] != watchFanout {
			t.Errorf("%s watched by %d members, want %d", n, by[n], watchFanout)
		}
	}
}

// TestWatchStreamOfLiveMember: a watch stream that ends while its member
// lives (an older speaker closes the unknown stream, a connection reset
// by something in between) marks nothing: the watcher's own connect is
// answered. The watcher opens a new stream afterwards, and memberlist's
// own streams (the join's push/pull) keep working beside the watch
// streams.
func TestWatchStreamOfLiveMember(t *testing.T) {
	var ml markLog
	a, pa := startMember(t, "a", memberOpts{logger: ml.logger("a")})
	b, _ := startMember(t, "b", memberOpts{logger: ml.logger("b")})
	join(t, b, pa)
	testutil.Eventually(t, 10*time.Second, "a watches b, held by b", func() (bool, string) {
		return slices.Equal(a.fast.watch.watching(), []string{"b"}) && b.fast.watch.held() == 1,
			fmt.Sprintf("a watches %v, b holds %d streams", a.fast.watch.watching(), b.fast.watch.held())
	})
	for range 3 {
		b.fast.watch.dropHeld()
		testutil.Eventually(t, 10*time.Second, "a's new watch stream to b", func() (bool, string) {
			return b.fast.watch.held() == 1, fmt.Sprintf("b holds %d streams", b.fast.watch.held())
		})
	}
	if downs, _ := ml.lines(); len(downs) > 0 {
		t.Errorf("a live member was marked down: %v", downs)
	}
	if !lists(a, "b") {
		t.Errorf("a lists %v, want b among them", a.Members())
	}
}

// watching lists the members watched.
func (w *watches) watching() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.out))
	for n := range w.out {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// held counts the inbound watch streams held.
func (w *watches) held() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.inbound)
}

// dropHeld closes the inbound watch streams, as an older speaker would.
func (w *watches) dropHeld() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for c := range w.inbound {
		_ = c.Close()
		delete(w.inbound, c)
	}
}

// TestCheckEnded: a killed process's kernel may end a watch stream a few
// milliseconds before it closes the listener, so the first connect after
// the end is answered. The watcher connects again before it believes the
// member lives; a member that keeps answering is left unmarked.
func TestCheckEnded(t *testing.T) {
	for _, tc := range []struct {
		name        string
		closeAfter  time.Duration // the listener's close after the check starts; 0 for never
		wantVerdict verdict
	}{
		{"listener closes 10 ms after the stream ended", 10 * time.Millisecond, verdictRefused},
		{"listener closes 60 ms after the stream ended", 60 * time.Millisecond, verdictRefused},
		{"the member lives", 0, verdictAnswered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", addr(0))
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			fp := newFastPath("a", testLogger("a"), testTiming(t), true, func() {})
			fp.addrs["b"] = netip.MustParseAddrPort(ln.Addr().String())
			if tc.closeAfter > 0 {
				time.AfterFunc(tc.closeAfter, func() { _ = ln.Close() })
			}
			got := fp.watch.checkEnded(t.Context(), "b")
			if got != tc.wantVerdict {
				t.Errorf("verdict %v, want %v", got, tc.wantVerdict)
			}
			if marked := fp.marked("b"); marked != (tc.wantVerdict == verdictRefused) {
				t.Errorf("b marked: %v, want %v", marked, !marked)
			}
		})
	}
}

// TestNoEchoChecks: with Config.NoEchoChecks a member pings none of the
// nodes it watches, while one with the checks on pings its own.
func TestNoEchoChecks(t *testing.T) {
	a, pa := startMember(t, "a", memberOpts{bind: "127.0.0.1", noEcho: true})
	b, _ := startMember(t, "b", memberOpts{bind: "127.0.0.2"})
	join(t, b, pa)
	echoed := func(m *Membership) []string {
		m.fast.echo.mu.Lock()
		defer m.fast.echo.mu.Unlock()
		var out []string
		for n := range m.fast.echo.targets {
			out = append(out, n)
		}
		return out
	}
	// Both know each other (a only watches b once it lists it).
	testutil.Eventually(t, 10*time.Second, "b pinging a's node, a watching b", func() (bool, string) {
		return slices.Equal(echoed(b), []string{"a"}) && slices.Equal(a.fast.watch.watching(), []string{"b"}),
			fmt.Sprintf("b pings %v, a watches %v", echoed(b), a.fast.watch.watching())
	})
	if got := echoed(a); len(got) > 0 {
		t.Errorf("a, with the echo checks off, pings %v", got)
	}
}

// TestMarked: a member that finds another's death itself (here its watch
// stream ends and its connect is refused) holds a mark, which Marked
// tells, until memberlist drops the dead member.
func TestMarked(t *testing.T) {
	a, pa := startMember(t, "a", memberOpts{})
	b, _ := startMember(t, "b", memberOpts{})
	join(t, b, pa)
	testutil.Eventually(t, 10*time.Second, "a watching b", func() (bool, string) {
		return slices.Equal(a.fast.watch.watching(), []string{"b"}), fmt.Sprint(a.fast.watch.watching())
	})
	if a.Marked() {
		t.Fatal("a holds a mark while every member lives")
	}
	_ = b.Shutdown()
	testutil.Eventually(t, 10*time.Second, "a marking b", func() (bool, string) { return a.Marked(), fmt.Sprint(a.Members()) })
}
