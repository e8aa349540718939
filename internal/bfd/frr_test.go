package bfd

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/barelb/barelb/internal/testutil"
)

// fastProfile is the 100 ms × 3 profile of the issue.
var fastProfile = Profile{ReceiveInterval: 100 * time.Millisecond, TransmitInterval: 100 * time.Millisecond, DetectMultiplier: 3}

// Generous bounds: the machine is shared and tests run side by side.
const (
	upTimeout     = 15 * time.Second
	detectTimeout = 3 * time.Second
)

// TestFRR runs a session against FRR's bfdd through its life: up,
// bfdd killed, restarted, its link down and up, an administrative
// shutdown on FRR's side, timer changes from both sides (Poll Sequences)
// and a removal on ours. IPv4 and IPv6.
func TestFRR(t *testing.T) {
	for _, tc := range []struct {
		name         string
		ours, theirs netip.Addr
	}{
		{"IPv4", addrA4, addrB4},
		{"IPv6", addrA6, addrB6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t)
			l.startFRR()
			configure := func() {
				l.frrPeer(tc.ours, tc.theirs, "receive-interval 100", "transmit-interval 100", "detect-multiplier 3")
			}
			configure()
			m, ev := startManager(t, l.nsA, testLog(t))
			peer := Peer{Local: tc.ours, Remote: tc.theirs, Interface: l.ifA, Profile: fastProfile}
			k := l.addUp(t, m, ev, peer)

			// bfdd killed: we detect it within the detection time.
			killed := time.Now()
			l.killBFDD()
			down := ev.waitAfter(t, k, StateDown, killed, detectTimeout)
			wantDetected(t, down, killed, "bfdd SIGKILLed")

			// bfdd restarted: Up again.
			restarted := time.Now()
			l.startBFDD()
			configure()
			up := ev.waitAfter(t, k, StateUp, restarted, upTimeout)
			t.Logf("%s: Up again %v after restarting bfdd", tc.name, up.At.Sub(restarted).Round(time.Millisecond))
			settle(t, m, ev, k, 100*time.Millisecond, 300*time.Millisecond)

			// The link down on FRR's side: detected in about 300 ms.
			cut := time.Now()
			l.run("ip", "-n", l.nsB, "link", "set", l.ifB, "down")
			down = ev.waitAfter(t, k, StateDown, cut, detectTimeout)
			t.Logf("%s: link down -> Down in %v (diag %s)", tc.name, down.At.Sub(cut).Round(time.Millisecond), down.Diag)
			if down.Diag != DiagControlDetectionExpired || !down.PeerFailed() {
				t.Errorf("down after a link cut: diag %s, PeerFailed %v", down.Diag, down.PeerFailed())
			}
			l.run("ip", "-n", l.nsB, "link", "set", l.ifB, "up")
			ev.wait(t, k, StateUp, upTimeout)
			settle(t, m, ev, k, 100*time.Millisecond, 300*time.Millisecond)

			// FRR shuts the session down administratively: we go Down
			// with NeighborSignaledSessionDown, not a failure (RFC 5882
			// §3.2), and stay Down while FRR says AdminDown.
			shut := time.Now()
			l.frrPeer(tc.ours, tc.theirs, "shutdown")
			down = ev.next(t, k, shut, detectTimeout, "Down on FRR's AdminDown", func(c Change) bool {
				return c.To == StateDown && c.RemoteState == StateAdminDown
			})
			t.Logf("%s: FRR shutdown -> Down, diag %s, remote state %s, remote diag %s", tc.name, down.Diag, down.RemoteState, down.RemoteDiag)
			if down.Diag != DiagNeighborSignaledDown || down.RemoteState != StateAdminDown || down.PeerFailed() {
				t.Errorf("down after FRR's shutdown: diag %s, remote state %s, PeerFailed %v; want NeighborSignaledSessionDown, AdminDown, false",
					down.Diag, down.RemoteState, down.PeerFailed())
			}
			ev.none(t, k, time.Second)
			if s := info(t, m, k); s.State != StateDown || s.RemoteState != StateAdminDown {
				t.Errorf("while FRR is shut down: state %s, remote %s; want Down, AdminDown", s.State, s.RemoteState)
			}
			l.frrPeer(tc.ours, tc.theirs, "no shutdown")
			ev.wait(t, k, StateUp, upTimeout)
			settle(t, m, ev, k, 100*time.Millisecond, 300*time.Millisecond)

			// Our timers change: a Poll Sequence, answered by FRR's
			// Final; the session stays Up.
			polls := info(t, m, k).Stats.PollsDone
			slower := Profile{ReceiveInterval: 200 * time.Millisecond, TransmitInterval: 250 * time.Millisecond, DetectMultiplier: 4}
			peer.Profile = slower
			if err := m.Add(context.Background(), peer); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 5*time.Second, "our Poll Sequence completes", func() (bool, string) {
				s := info(t, m, k)
				return !s.Polling && s.Stats.PollsDone > polls, fmt.Sprintf("polling %v, polls done %d", s.Polling, s.Stats.PollsDone)
			})
			testutil.Eventually(t, 5*time.Second, "FRR sees our new timers", func() (bool, string) {
				s := l.frrState(tc.ours)
				return s.Status == "up" && s.RemoteReceive == 200 && s.RemoteTransmit == 250 && s.RemoteDetectMult == 4, fmt.Sprintf("FRR: %+v", s)
			})
			s := info(t, m, k)
			// FRR transmits at max(its 100 ms, our 200 ms); its detect
			// multiplier is 3.
			if s.TxInterval != 250*time.Millisecond || s.DetectionTime != 600*time.Millisecond {
				t.Errorf("after our change: tx %v, detection %v; want 250ms, 600ms", s.TxInterval, s.DetectionTime)
			}

			// FRR's timers change: FRR polls, we answer Final.
			l.frrPeer(tc.ours, tc.theirs, "receive-interval 300", "transmit-interval 150")
			testutil.Eventually(t, 5*time.Second, "we see FRR's new timers", func() (bool, string) {
				s := info(t, m, k)
				return s.RemoteMinRxInterval == 300*time.Millisecond && s.RemoteDesiredMinTx == 150*time.Millisecond,
					fmt.Sprintf("remote min rx %v, desired min tx %v", s.RemoteMinRxInterval, s.RemoteDesiredMinTx)
			})
			testutil.Eventually(t, 5*time.Second, "FRR's Poll Sequence completes", func() (bool, string) {
				s := info(t, m, k)
				return s.TxInterval == 300*time.Millisecond && s.DetectionTime == 3*200*time.Millisecond,
					fmt.Sprintf("tx %v, detection %v", s.TxInterval, s.DetectionTime)
			})
			ev.none(t, k, time.Second)
			if st := l.frrState(tc.ours).Status; st != "up" {
				t.Errorf("FRR's session is %s after the timer changes, want up", st)
			}

			// Removal: AdminDown reaches FRR.
			m.Remove(k)
			testutil.Eventually(t, 5*time.Second, "FRR sees our AdminDown", func() (bool, string) {
				s := l.frrState(tc.ours)
				return s.Status == "down" && s.RemoteDiagnostic == "administratively down", fmt.Sprintf("FRR: %+v", s)
			})
			if n := len(m.Sessions()); n != 0 {
				t.Errorf("%d sessions after Remove", n)
			}
			t.Logf("%s: manager stats %+v", tc.name, m.Stats())
		})
	}
}

// waitSettled waits until a session is Up with no Poll Sequence pending
// and the given transmission interval and detection time.
func waitSettled(t testing.TB, m *Manager, k Key, tx, detect time.Duration) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, "session settles on tx "+tx.String()+", detection "+detect.String(), func() (bool, string) {
		s := info(t, m, k)
		return s.State == StateUp && !s.Polling && s.TxInterval == tx && s.DetectionTime == detect,
			fmt.Sprintf("%s, polling %v, tx %v, detection %v", s.State, s.Polling, s.TxInterval, s.DetectionTime)
	})
}

// BenchmarkDetection measures, against FRR's bfdd with 100 ms × 3 timers,
// the time from the peer failing to our Down: bfdd SIGKILLed, or FRR's
// link taken down. Each iteration waits for the session to be Up again
// (outside the timer), so iterations take a few seconds; run it with a
// count, e.g. -bench Detection -benchtime 20x. It reports the median,
// minimum and maximum detection in milliseconds.
func BenchmarkDetection(b *testing.B) {
	for _, mode := range []string{"bfdd-killed", "link-down"} {
		b.Run(mode, func(b *testing.B) {
			l := newLab(b)
			l.startFRR()
			configure := func() {
				l.frrPeer(addrA4, addrB4, "receive-interval 100", "transmit-interval 100", "detect-multiplier 3")
			}
			configure()
			m, ev := startManager(b, l.nsA, testLog(b))
			peer := Peer{Local: addrA4, Remote: addrB4, Interface: l.ifA, Profile: fastProfile}
			k := peer.Key()
			if err := m.Add(context.Background(), peer); err != nil {
				b.Fatal(err)
			}
			var samples []time.Duration
			retries := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				if info(b, m, k).State != StateUp {
					ev.wait(b, k, StateUp, upTimeout)
				}
				settle(b, m, ev, k, 100*time.Millisecond, 300*time.Millisecond)
				// Start at a random phase of the peer's transmissions.
				time.Sleep(time.Duration(rand.IntN(100)) * time.Millisecond)
				if flapped(ev, k) || info(b, m, k).State != StateUp {
					// A flap (the machine is loaded) since settling: the
					// session is not Up to measure; settle again.
					if retries++; retries > 10 {
						b.Fatal("too many flaps")
					}
					b.Logf("FLAP before injection; retrying")
					i--
					continue
				}
				b.StartTimer()
				failed := time.Now()
				if mode == "bfdd-killed" {
					l.killBFDD()
				} else {
					l.run("ip", "-n", l.nsB, "link", "set", l.ifB, "down")
				}
				down := ev.waitAfter(b, k, StateDown, failed, detectTimeout)
				b.StopTimer()
				if down.Diag != DiagControlDetectionExpired {
					b.Fatalf("diag %s", down.Diag)
				}
				samples = append(samples, down.At.Sub(failed))
				if mode == "bfdd-killed" {
					l.startBFDD()
					configure()
				} else {
					l.run("ip", "-n", l.nsB, "link", "set", l.ifB, "up")
				}
			}
			slices.Sort(samples)
			med := samples[len(samples)/2]
			b.ReportMetric(float64(med)/1e6, "median-ms")
			b.ReportMetric(float64(samples[0])/1e6, "min-ms")
			b.ReportMetric(float64(samples[len(samples)-1])/1e6, "max-ms")
			// Printed, not logged: a benchmark's log is cut after a few
			// lines, and flaps while settling are logged.
			fmt.Printf("BenchmarkDetection/%s: %d detections with 100 ms × 3: median %v, min %v, max %v; all %v\n",
				mode, len(samples), med.Round(time.Millisecond), samples[0].Round(time.Millisecond),
				samples[len(samples)-1].Round(time.Millisecond), roundAll(samples))
		})
	}
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// TestFRRPassive: a passive side waits for the other's first packet
// (RFC 5880 §6.1), whichever side it is.
func TestFRRPassive(t *testing.T) {
	passive := fastProfile
	passive.Passive = true
	for _, tc := range []struct {
		name     string
		ours     Profile
		frrExtra []string
	}{
		{"we are passive", passive, nil},
		{"FRR is passive", fastProfile, []string{"passive-mode"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t)
			l.startFRR()
			m, ev := startManager(t, l.nsA, testLog(t))
			peer := Peer{Local: addrA4, Remote: addrB4, Interface: l.ifA, Profile: tc.ours}
			if err := m.Add(context.Background(), peer); err != nil {
				t.Fatal(err)
			}
			k := peer.Key()
			if tc.ours.Passive {
				// Alone, a passive session says nothing.
				time.Sleep(1500 * time.Millisecond)
				if s := info(t, m, k); s.Stats.PacketsOut != 0 {
					t.Fatalf("a passive session sent %d packets before hearing its peer", s.Stats.PacketsOut)
				}
			}
			l.frrPeer(addrA4, addrB4, append([]string{"receive-interval 100", "transmit-interval 100", "detect-multiplier 3"}, tc.frrExtra...)...)
			ev.wait(t, k, StateUp, upTimeout)
			waitSettled(t, m, k, 100*time.Millisecond, 300*time.Millisecond)
			testutil.Eventually(t, 5*time.Second, "FRR up", func() (bool, string) {
				s := l.frrState(addrA4)
				return s.Status == "up", s.Status
			})
		})
	}
}

// flapped drains pending changes and tells whether one was of peer.
func flapped(ev events, peer Key) bool {
	found := false
	for {
		select {
		case c := <-ev:
			found = found || c.Peer == peer
		default:
			return found
		}
	}
}

// TestFRRMultihop runs multihop sessions (RFC 5883) against FRR's bfdd
// two hops away, a router between: up on port 4784 although the packets
// arrive with TTL 254, which single-hop BFD drops; down within the
// detection time when the far link goes (which neither end sees on its
// own links); a minimum TTL of 255 drops the peer's packets (they come
// with 254) and the default of 254 takes them again. IPv4 and IPv6.
func TestFRRMultihop(t *testing.T) {
	for _, tc := range []struct {
		name         string
		ours, theirs netip.Addr
	}{
		{"IPv4", addrA4, farB4},
		{"IPv6", addrA6, farB6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newRoutedLab(t)
			l.startFRR()
			l.frrMultihopPeer(tc.ours, tc.theirs, "receive-interval 100", "transmit-interval 100", "detect-multiplier 3")
			m, ev := startManager(t, l.nsA, testLog(t))

			// A single-hop session to a peer two hops away never comes up:
			// what the glue must not do for an ebgpMultiHop peer.
			single := Peer{Local: tc.ours, Remote: tc.theirs, Profile: fastProfile}
			if err := m.Add(context.Background(), single); err != nil {
				t.Fatal(err)
			}
			peer := Peer{Local: tc.ours, Remote: tc.theirs, Multihop: true, Profile: fastProfile}
			k := l.addUp(t, m, ev, peer)
			if s := info(t, m, single.Key()); s.State == StateUp || s.Stats.PacketsIn != 0 {
				t.Errorf("the single-hop session to a peer two hops away: state %s, %d packets in; want Down, none", s.State, s.Stats.PacketsIn)
			}
			m.Remove(single.Key())

			// The far link down: only BFD can tell.
			cut := time.Now()
			l.run("ip", "-n", l.nsR, "link", "set", l.ifRB, "down")
			down := ev.waitAfter(t, k, StateDown, cut, detectTimeout)
			wantDetected(t, down, cut, "far link down")
			l.run("ip", "-n", l.nsR, "link", "set", l.ifRB, "up")
			ev.wait(t, k, StateUp, upTimeout)
			settle(t, m, ev, k, 100*time.Millisecond, 300*time.Millisecond)

			// Minimum TTL 255: FRR's packets (TTL 254 here) are dropped.
			bad := m.Stats().BadTTL
			strict := peer
			strict.Profile.MinimumTTL = 255
			if err := m.Add(context.Background(), strict); err != nil {
				t.Fatal(err)
			}
			down = ev.wait(t, k, StateDown, detectTimeout)
			if down.Diag != DiagControlDetectionExpired {
				t.Errorf("with minimum TTL 255: down with diag %s, want ControlDetectionTimeExpired", down.Diag)
			}
			if got := m.Stats().BadTTL; got <= bad {
				t.Errorf("with minimum TTL 255: BadTTL %d -> %d, want it to grow", bad, got)
			}
			t.Logf("%s: minimum TTL 255 -> Down (diag %s), BadTTL %d -> %d", tc.name, down.Diag, bad, m.Stats().BadTTL)
			// Back to the default, 254: Up again.
			if err := m.Add(context.Background(), peer); err != nil {
				t.Fatal(err)
			}
			ev.wait(t, k, StateUp, upTimeout)
			t.Logf("%s: manager stats %+v", tc.name, m.Stats())
		})
	}
}

// addUp adds peer to m and waits until the session is Up on both sides
// with our 100 ms timers, once the Poll Sequence that follows Up is over.
func (l *lab) addUp(t *testing.T, m *Manager, ev events, peer Peer) Key {
	t.Helper()
	k := peer.Key()
	start := time.Now()
	if err := m.Add(context.Background(), peer); err != nil {
		t.Fatal(err)
	}
	up := ev.wait(t, k, StateUp, upTimeout)
	t.Logf("%s: Up after %v (multihop %v)", peer.Remote, up.At.Sub(start).Round(time.Millisecond), peer.Multihop)
	settle(t, m, ev, k, 100*time.Millisecond, 300*time.Millisecond)
	testutil.Eventually(t, 5*time.Second, "FRR sees the session up with our 100 ms timers", func() (bool, string) {
		s := l.frrState(peer.Local)
		return s.Status == "up" && s.Multihop == peer.Multihop && s.RemoteID == info(t, m, k).LocalDiscriminator &&
			s.RemoteReceive == 100 && s.RemoteTransmit == 100, fmt.Sprintf("FRR: %+v", s)
	})
	return k
}

// wantDetected checks a Down the peer's failure caused at since: the
// detection time expired, in about 300 ms (at most 1 s).
func wantDetected(t *testing.T, down Change, since time.Time, cause string) {
	t.Helper()
	detection := down.At.Sub(since)
	t.Logf("%s -> Down in %v (diag %s)", cause, detection.Round(time.Millisecond), down.Diag)
	if down.Diag != DiagControlDetectionExpired || !down.PeerFailed() {
		t.Errorf("down after %s: diag %s, PeerFailed %v; want ControlDetectionTimeExpired, true", cause, down.Diag, down.PeerFailed())
	}
	if detection > time.Second {
		t.Errorf("%s: detection took %v, want about 300 ms (at most 1 s)", cause, detection)
	}
}
