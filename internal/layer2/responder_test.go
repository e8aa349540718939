package layer2

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/barelb/barelb/internal/testenv"
)

// startResponder opens a responder inside the link's speaker namespace.
func startResponder(ctx context.Context, t *testing.T, l *testenv.Link, opts Options) *Responder {
	t.Helper()
	var r *Responder
	err := l.InSpeaker(func() error {
		ifi, err := net.InterfaceByName(l.SpeakerIf)
		if err != nil {
			return err
		}
		r, err = NewResponder(ifi, testr.New(t), opts)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, ctx, r.Run)
	return r
}

func TestResponderOnALink(t *testing.T) {
	l := testenv.NewLink(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := startResponder(ctx, t, l, Options{})
	ours, reachableOurs := testenv.ResolvesTo(l.SpeakerMAC), testenv.ReachableAt(l.SpeakerMAC)

	for _, vip := range []netip.Addr{vip4, vip6} {
		t.Run("resolves "+vip.String(), func(t *testing.T) {
			if err := r.Announce(vip, AnnounceOptions{}); err != nil {
				t.Fatal(err)
			}
			l.Touch(vip)
			l.WaitNeighbour(t, vip, "our MAC", reachableOurs)
		})

		t.Run("gratuitous announcement replaces an old entry "+vip.String(), func(t *testing.T) {
			r.Withdraw(vip)
			l.SetNeighbour(vip, "02:00:00:00:00:99", "stale")
			if err := r.Announce(vip, AnnounceOptions{}); err != nil {
				t.Fatal(err)
			}
			l.WaitNeighbour(t, vip, "our MAC after the gratuitous announcement", ours)
		})

		t.Run("answers the client's unicast re-check of a stale entry "+vip.String(), func(t *testing.T) {
			l.SetNeighbour(vip, l.SpeakerMAC, "stale")
			// Traffic to a stale entry sends it to DELAY, then PROBE: a
			// unicast solicitation to the address itself, which only a
			// packet socket sees when the address is on no interface.
			l.Touch(vip)
			l.WaitNeighbour(t, vip, "REACHABLE again after the unicast probe", reachableOurs)
		})

		t.Run("stops answering when withdrawn "+vip.String(), func(t *testing.T) {
			r.Withdraw(vip)
			l.FlushNeighbour(vip)
			l.Touch(vip)
			time.Sleep(1500 * time.Millisecond)
			if entry := l.Neighbour(vip); ours(entry) {
				t.Fatalf("client still resolves %s to us: %q", vip, entry)
			}
		})
	}
	if r.Stats.ARPAnswers.Load() == 0 || r.Stats.NDPAnswers.Load() == 0 || r.Stats.Gratuitous.Load() == 0 {
		t.Errorf("stats did not count: arp %d, ndp %d, gratuitous %d", r.Stats.ARPAnswers.Load(), r.Stats.NDPAnswers.Load(), r.Stats.Gratuitous.Load())
	}
}
