package membership

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/barelb/barelb/internal/testutil"
)

func TestRestartingNotice(t *testing.T) {
	for _, tc := range []struct {
		name     string
		msg      []byte
		wantName string
		wantHold time.Duration
		wantOK   bool
	}{
		{"round trip", encodeRestarting("node1", 10*time.Second), "node1", 10 * time.Second, true},
		{"a hold past the bound is cut to it", encodeRestarting("node1", time.Hour), "node1", MaxRestartHold, true},
		{"no hold", []byte(restartingPrefix + "node1\x000"), "", 0, false},
		{"no name", []byte(restartingPrefix + "\x001000"), "", 0, false},
		{"garbage hold", []byte(restartingPrefix + "node1\x00soon"), "", 0, false},
		{"a leaving notice", encodeLeaving("node1"), "", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name, hold, ok := decodeRestarting(tc.msg)
			if diff := cmp.Diff(fmt.Sprint(tc.wantName, tc.wantHold, tc.wantOK), fmt.Sprint(name, hold, ok)); diff != "" {
				t.Errorf("decodeRestarting (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRestartHold: a member that restarts in place is held by the others
// while it is away and after it is back, until its hold ends; once back,
// its death ends the hold at once (it is a death like any other); a
// member that does not come back is held until its time is up.
func TestRestartHold(t *testing.T) {
	a, pa := startMember(t, "a", memberOpts{})
	b, pb := startMember(t, "b", memberOpts{})
	c, _ := startMember(t, "c", memberOpts{})
	join(t, b, pa)
	join(t, c, pa)
	testutil.Eventually(t, 10*time.Second, "three members", sees([]*Membership{a, b, c}, "a", "b", "c"))

	held := func(m *Membership, want ...string) func() (bool, string) {
		return func() (bool, string) {
			got := m.Held()
			return slices.Equal(got, want), fmt.Sprintf("held %v, want %v", got, want)
		}
	}
	// b restarts: a and c hold it, although it is gone.
	if err := b.Restart(time.Minute, time.Second); err != nil {
		t.Fatal(err)
	}
	_ = b.Shutdown()
	testutil.Eventually(t, 10*time.Second, "b held by a", held(a, "b"))
	testutil.Eventually(t, 10*time.Second, "b held by c", held(c, "b"))
	testutil.Eventually(t, 10*time.Second, "b gone from a's members", func() (bool, string) {
		return !lists(a, "b"), fmt.Sprint(a.Members())
	})
	// b is back: still held (a restarted speaker is not ready at once).
	b2, _ := startMember(t, "b", memberOpts{port: pb})
	join(t, b2, pa)
	testutil.Eventually(t, 10*time.Second, "b back in a's members", func() (bool, string) {
		return lists(a, "b"), fmt.Sprint(a.Members())
	})
	if got := a.Held(); !slices.Equal(got, []string{"b"}) {
		t.Errorf("a holds %v once b is back, want [b]", got)
	}
	// b dies after its restart: nobody holds it any more.
	_ = b2.Shutdown()
	testutil.Eventually(t, 10*time.Second, "b's death after its restart ends a's hold", held(a))
	testutil.Eventually(t, 10*time.Second, "b's death after its restart ends c's hold", held(c))

	// c restarts and never comes back: held until its time is up.
	if err := c.Restart(500*time.Millisecond, time.Second); err != nil {
		t.Fatal(err)
	}
	_ = c.Shutdown()
	testutil.Eventually(t, 5*time.Second, "c held by a", held(a, "c"))
	testutil.Eventually(t, 5*time.Second, "c's hold over", held(a))
}

// TestRestartNoticeAndLeave: memberlist hands a restarting member's
// notice to NotifyMsg and its leave to NotifyLeave right after, one after
// the other on its packet goroutine; the plan the leave wakes must find
// the member held already, or another node takes its addresses over and
// hands them back. A notice that comes after the leave (its direct copy
// lost, the gossiped one behind the leave) holds the member too.
func TestRestartNoticeAndLeave(t *testing.T) {
	for _, tc := range []struct {
		name        string
		noticeFirst bool
	}{
		{"notice, then leave", true},
		{"leave, then notice", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, pa := startMember(t, "a", memberOpts{})
			b, _ := startMember(t, "b", memberOpts{})
			join(t, b, pa)
			testutil.Eventually(t, 10*time.Second, "two members", sees([]*Membership{a, b}, "a", "b"))
			node := b.list.LocalNode()
			notice := delegate{fp: a.fast, meta: &a.meta, departing: a.departing, restarting: a.restarting}
			steps := []func(){
				func() { notice.NotifyMsg(encodeRestarting("b", time.Minute)) },
				func() { events{a}.NotifyLeave(node) },
			}
			if !tc.noticeFirst {
				slices.Reverse(steps)
			}
			for _, step := range steps {
				step()
			}
			if diff := cmp.Diff([]string{"b"}, a.Held()); diff != "" {
				t.Errorf("held once the notice and the leave are in (-want +got):\n%s", diff)
			}
		})
	}
}
