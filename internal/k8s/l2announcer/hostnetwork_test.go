package l2announcer

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/barelb/barelb/internal/layer2"
	"github.com/barelb/barelb/internal/testenv"
)

// TestInterfaceMadeAgain: an interface deleted and made again with
// another MAC gets a working responder without a restart; the addresses
// are answered from the new MAC, and calls made on the old responder
// reach the new one.
func TestInterfaceMadeAgain(t *testing.T) {
	link := testenv.NewLink(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	network := &HostNetwork{Ctx: ctx, Log: testr.New(t), InNetns: link.InSpeaker}
	vip4, vip6 := netip.MustParseAddr("198.51.100.200"), netip.MustParseAddr("2001:db8:100::200")
	old, err := network.Responder(ctx, link.SpeakerIf, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, vip := range []netip.Addr{vip4, vip6} {
		if err := old.Announce(vip, layer2.AnnounceOptions{}); err != nil {
			t.Fatal(err)
		}
		link.Touch(vip)
		link.WaitNeighbour(t, vip, "the first MAC", testenv.ReachableAt(link.SpeakerMAC))
	}

	link.Recreate("02:00:00:00:00:02")
	testenv.Run(t, ctx, func(ctx context.Context) error { network.Watch(ctx, 100*time.Millisecond); return nil })
	start := time.Now()
	for _, vip := range []netip.Addr{vip4, vip6} {
		link.Touch(vip)
		link.WaitNeighbour(t, vip, "the new MAC", testenv.ReachableAt(link.SpeakerMAC))
	}
	t.Logf("answered from the new interface %v after it was made", time.Since(start).Round(time.Millisecond))
	fresh, err := network.Responder(ctx, link.SpeakerIf, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fresh == old {
		t.Fatal("the responder of the deleted interface is still in use")
	}
	old.Withdraw(vip4)
	if fresh.Owns(vip4) || !fresh.Owns(vip6) {
		t.Errorf("a withdrawal through the old responder: new one owns %s %v (want false), %s %v (want true)",
			vip4, fresh.Owns(vip4), vip6, fresh.Owns(vip6))
	}
}
