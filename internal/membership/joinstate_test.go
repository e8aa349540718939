package membership

import (
	"sync"
	"testing"
	"time"

	"github.com/barelb/barelb/internal/testutil"
	"github.com/google/go-cmp/cmp"
)

// recordedState hands out a fixed state and records what it is given.
type recordedState struct {
	local []byte

	mu  sync.Mutex
	got []string
}

func (s *recordedState) LocalJoinState() []byte { return s.local }
func (s *recordedState) MergeJoinState(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, string(b))
}
func (s *recordedState) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

// TestJoinStateGoesBothWaysOnJoinsOnly: join state travels both ways when
// a member joins another, and when a member asks for it
// (RequestJoinState), but not on the periodic push/pulls, which would
// resend it every PushPullInterval.
func TestJoinStateGoesBothWaysOnJoinsOnly(t *testing.T) {
	key := []byte("0123456789abcdef")
	aState, bState := &recordedState{local: []byte("table of a")}, &recordedState{}
	a, aPort := startMember(t, "a", memberOpts{key: key, state: aState, pushPull: 200 * time.Millisecond})
	b, _ := startMember(t, "b", memberOpts{key: key, state: bState, pushPull: 200 * time.Millisecond})
	join(t, b, aPort)
	testutil.Eventually(t, 5*time.Second, "b receives a's state", func() (bool, string) { return len(bState.received()) > 0, "nothing yet" })
	if diff := cmp.Diff([]string{"table of a"}, bState.received()); diff != "" {
		t.Errorf("b received (-want +got):\n%s", diff)
	}
	if got := aState.received(); len(got) != 0 {
		t.Errorf("a received %q from b, which has no state", got)
	}
	// Several periodic push/pulls (testTiming's PushPullInterval) bring
	// nothing more.
	time.Sleep(3 * a.timing.PushPullInterval)
	if got := bState.received(); len(got) != 1 {
		t.Errorf("b received the state %d times, want once (on the join only)", len(got))
	}
	bState.local = []byte("table of b")
	if n := b.RequestJoinState(3); n != 1 {
		t.Fatalf("RequestJoinState answered by %d members, want 1", n)
	}
	if diff := cmp.Diff([]string{"table of a", "table of a"}, bState.received()); diff != "" {
		t.Errorf("b received after asking (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"table of b"}, aState.received()); diff != "" {
		t.Errorf("a received after b asked (-want +got):\n%s", diff)
	}
}
