package l2announcer

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

// TestSelfCountsAfterTheOthersHeardIt: a speaker counts itself as ready
// (and so elects itself) only SelfReadyDelay after its metadata says it is
// ready, about when the others count it too, and then asks for a plan
// once. Electing itself at once made a restarted speaker answer for its
// addresses while the others, not knowing it ready, still did.
func TestSelfCountsAfterTheOthersHeardIt(t *testing.T) {
	a, _ := newMember(t, "a")
	_, bAddr := newMember(t, "b")
	if _, err := a.Join(context.Background(), []string{bAddr}); err != nil {
		t.Fatal(err)
	}
	if err := a.SetMeta(SpeakerMeta(nil, 512, false), time.Second); err != nil {
		t.Fatal(err)
	}

	const delay = 400 * time.Millisecond
	members := &MemberlistMembers{Membership: a, Log: testr.New(t), Self: "a", SelfReadyDelay: delay}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	plans := make(chan event.GenericEvent, 1)
	go members.Forward(ctx, plans)
	waitAlive(t, members, "both listed, a not ready", func(alive map[string]bool) bool {
		_, listedA := alive["a"]
		return listedA && !alive["a"] && alive["b"]
	})
	for len(plans) > 0 {
		<-plans
	}

	readyAt := time.Now()
	if err := a.SetMeta(SpeakerMeta(nil, 512, true), time.Second); err != nil {
		t.Fatal(err)
	}
	if alive, _ := members.Alive(); alive["a"] {
		t.Fatal("a counts itself as ready as soon as its metadata says so, before the others can have heard it")
	}
	// Membership changes ask for plans too; one must come after the
	// delay, when a counts itself.
	deadline := time.After(delay + 2*time.Second)
	for asked := false; !asked; {
		select {
		case <-plans:
			asked = time.Since(readyAt) >= delay
		case <-deadline:
			t.Fatal("no plan asked for once a counts itself as ready")
		}
	}
	if alive, _ := members.Alive(); !alive["a"] {
		t.Fatalf("a does not count itself as ready %v after its metadata said so", time.Since(readyAt))
	}
}

// TestRestartingSpeakerKeepsItsAddresses: a speaker that restarts in place
// (membership.Restart) stays alive in the others' plans while it is away
// and while it is back but not ready yet, so that its addresses do not
// move there and back.
func TestRestartingSpeakerKeepsItsAddresses(t *testing.T) {
	a, aAddr := newMember(t, "a")
	b, _ := newMember(t, "b")
	if err := b.SetMeta(SpeakerMeta(nil, 512, true), time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Join(context.Background(), []string{aAddr}); err != nil {
		t.Fatal(err)
	}
	members := &MemberlistMembers{Membership: a, Log: testr.New(t), Self: "a"}
	waitAlive(t, members, "b alive", func(alive map[string]bool) bool { return alive["b"] })
	if err := b.Restart(time.Minute, time.Second); err != nil {
		t.Fatal(err)
	}
	_ = b.Shutdown()
	waitAlive(t, members, "b gone from memberlist", func(map[string]bool) bool { return !slices.Contains(a.Members(), "b") })
	if alive, _ := members.Alive(); !alive["b"] {
		t.Fatalf("b is not alive in a's view while it restarts: %v", alive)
	}
}

// waitAlive waits until members has formed and its live members satisfy ok.
func waitAlive(t *testing.T, members *MemberlistMembers, what string, ok func(map[string]bool) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		alive, formed := members.Alive()
		if formed && ok(alive) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %v (formed %v)", what, alive, formed)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
