package bfd

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	ourDiscr   = 0x1111
	theirDiscr = 0x2222
)

func newTestSession(t *testing.T, p Profile) *Session {
	t.Helper()
	s, err := NewSession(t0, p, ourDiscr, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// from builds the peer's packet.
func from(state State, your uint32, mod ...func(*Packet)) Packet {
	p := Packet{State: state, DetectMult: 3, MyDiscriminator: theirDiscr, YourDiscriminator: your,
		DesiredMinTxInterval: 100 * time.Millisecond, RequiredMinRxInterval: 100 * time.Millisecond}
	for _, f := range mod {
		f(&p)
	}
	return p
}

// bringTo drives a fresh session into state.
func bringTo(t *testing.T, s *Session, state State) {
	t.Helper()
	switch state {
	case StateDown:
	case StateInit:
		mustReceive(t, s, t0, from(StateDown, 0))
	case StateUp:
		mustReceive(t, s, t0, from(StateInit, ourDiscr))
	case StateAdminDown:
		s.AdminDown(t0)
	}
	if s.State() != state {
		t.Fatalf("set-up: session is %s, want %s", s.State(), state)
	}
}

func mustReceive(t *testing.T, s *Session, now time.Time, p Packet) Step {
	t.Helper()
	st, err := s.Receive(now, p)
	if err != nil {
		t.Fatalf("Receive(%+v): %v", p, err)
	}
	return st
}

// TestSessionReception is the state table of RFC 5880 §6.2 and §6.8.6.
func TestSessionReception(t *testing.T) {
	tests := []struct {
		from     State
		received State
		want     State
		wantDiag Diag
	}{
		{StateDown, StateDown, StateInit, DiagNone},
		{StateDown, StateInit, StateUp, DiagNone},
		{StateDown, StateUp, StateDown, DiagNone},
		{StateDown, StateAdminDown, StateDown, DiagNone},
		{StateInit, StateDown, StateInit, DiagNone},
		{StateInit, StateInit, StateUp, DiagNone},
		{StateInit, StateUp, StateUp, DiagNone},
		{StateInit, StateAdminDown, StateDown, DiagNeighborSignaledDown},
		{StateUp, StateDown, StateDown, DiagNeighborSignaledDown},
		{StateUp, StateInit, StateUp, DiagNone},
		{StateUp, StateUp, StateUp, DiagNone},
		{StateUp, StateAdminDown, StateDown, DiagNeighborSignaledDown},
		{StateAdminDown, StateDown, StateAdminDown, DiagAdminDown},
		{StateAdminDown, StateInit, StateAdminDown, DiagAdminDown},
		{StateAdminDown, StateUp, StateAdminDown, DiagAdminDown},
	}
	for _, tc := range tests {
		t.Run(tc.from.String()+"+"+tc.received.String(), func(t *testing.T) {
			s := newTestSession(t, fastProfile)
			bringTo(t, s, tc.from)
			your := uint32(ourDiscr)
			if tc.received == StateDown || tc.received == StateAdminDown {
				your = 0
			}
			now := t0.Add(time.Millisecond)
			st := mustReceive(t, s, now, from(tc.received, your))
			if s.State() != tc.want {
				t.Fatalf("state %s, want %s", s.State(), tc.want)
			}
			if d := s.Info().Diag; d != tc.wantDiag {
				t.Errorf("diag %s, want %s", d, tc.wantDiag)
			}
			changed := tc.from != tc.want
			if (st.Transition != nil) != changed {
				t.Fatalf("transition %+v, want one: %v", st.Transition, changed)
			}
			if changed {
				if st.Transition.From != tc.from || st.Transition.To != tc.want || st.Transition.RemoteState != tc.received || !st.Transition.At.Equal(now) {
					t.Errorf("transition %+v", st.Transition)
				}
				if !st.Send || st.Packet.State != tc.want {
					t.Errorf("a state change sends at once: send %v, packet %+v", st.Send, st.Packet)
				}
			}
			if tc.from == StateAdminDown && st.Send {
				t.Errorf("AdminDown answered a packet: %+v", st.Packet)
			}
		})
	}
}

func TestSessionDiscriminators(t *testing.T) {
	s := newTestSession(t, fastProfile)
	st := s.Tick(t0)
	if !st.Send || st.Packet.MyDiscriminator != ourDiscr || st.Packet.YourDiscriminator != 0 || st.Packet.State != StateDown {
		t.Fatalf("first packet %+v", st.Packet)
	}
	if _, err := s.Receive(t0, from(StateDown, 0x9999)); !errors.Is(err, ErrDiscriminator) {
		t.Fatalf("packet for another discriminator: %v, want ErrDiscriminator", err)
	}
	if s.State() != StateDown || s.Info().RemoteDiscriminator != 0 {
		t.Fatalf("a discarded packet changed the session: %+v", s.Info())
	}
	st = mustReceive(t, s, t0, from(StateDown, 0))
	if st.Packet.YourDiscriminator != theirDiscr {
		t.Errorf("your discriminator %x, want the peer's %x", st.Packet.YourDiscriminator, theirDiscr)
	}
	// The detection time passes: bfd.RemoteDiscr is forgotten (§6.8.1).
	s.Tick(t0.Add(4 * time.Second))
	if s.State() != StateDown || s.Info().RemoteDiscriminator != 0 {
		t.Errorf("after the detection time: %s, remote discriminator %x", s.State(), s.Info().RemoteDiscriminator)
	}
}

// TestDetectionTime: remote detect mult × max(local required min RX,
// remote desired min TX) (§6.8.4).
func TestDetectionTime(t *testing.T) {
	tests := []struct {
		name      string
		localRx   time.Duration
		remoteTx  time.Duration
		remoteMul uint8
		want      time.Duration
	}{
		{"100ms x 3", 100 * time.Millisecond, 100 * time.Millisecond, 3, 300 * time.Millisecond},
		{"remote sends slower", 100 * time.Millisecond, 250 * time.Millisecond, 3, 750 * time.Millisecond},
		{"we receive slower", 500 * time.Millisecond, 100 * time.Millisecond, 3, 1500 * time.Millisecond},
		{"remote multiplier counts, not ours", 100 * time.Millisecond, 100 * time.Millisecond, 5, 500 * time.Millisecond},
		{"while Down the remote sends at 1 s", 100 * time.Millisecond, time.Second, 3, 3 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestSession(t, Profile{ReceiveInterval: tc.localRx, TransmitInterval: 100 * time.Millisecond, DetectMultiplier: 7})
			if d := s.DetectionTime(); d != 0 {
				t.Fatalf("detection time %v before any packet", d)
			}
			mustReceive(t, s, t0, from(StateDown, 0, func(p *Packet) {
				p.DetectMult, p.DesiredMinTxInterval = tc.remoteMul, tc.remoteTx
			}))
			if d := s.DetectionTime(); d != tc.want {
				t.Fatalf("detection time %v, want %v", d, tc.want)
			}
			// The session (Init) stays up to the deadline and goes down
			// at it.
			if st := s.Tick(t0.Add(tc.want - time.Nanosecond)); st.Transition != nil {
				t.Fatalf("down before the detection time: %+v", st.Transition)
			}
			if got := s.Next(); got.After(t0.Add(tc.want)) {
				t.Fatalf("Next %v is after the detection deadline", got.Sub(t0))
			}
			st := s.Tick(t0.Add(tc.want))
			if st.Transition == nil || st.Transition.To != StateDown || st.Transition.Diag != DiagControlDetectionExpired {
				t.Fatalf("at the detection time: %+v", st.Transition)
			}
		})
	}
}

func TestDetectionFromUp(t *testing.T) {
	s := newTestSession(t, fastProfile)
	bringTo(t, s, StateUp)
	last := t0
	for i := 1; i <= 10; i++ { // packets every 100 ms keep it Up
		last = t0.Add(time.Duration(i) * 100 * time.Millisecond)
		mustReceive(t, s, last, from(StateUp, ourDiscr, func(p *Packet) { p.Final = true }))
		if st := s.Tick(last.Add(250 * time.Millisecond)); st.Transition != nil {
			t.Fatalf("went down at %v", last.Add(250*time.Millisecond).Sub(t0))
		}
	}
	st := s.Tick(last.Add(300 * time.Millisecond))
	if st.Transition == nil || st.Transition.From != StateUp || !st.Transition.PeerFailed() {
		t.Fatalf("no failure 300 ms after the last packet: %+v", st.Transition)
	}
	if !st.Send || st.Packet.State != StateDown || st.Packet.Diag != DiagControlDetectionExpired || st.Packet.YourDiscriminator != 0 {
		t.Errorf("the Down packet: send %v %+v", st.Send, st.Packet)
	}
	if tx := s.Info().AdvertisedTx; tx != time.Second {
		t.Errorf("advertised tx %v after going down, want 1s", tx)
	}
}

// TestTransmitIntervals: 1 s while not Up (§6.8.3), the larger of ours and
// the peer's required interval when Up, jittered to 75–100 % (75–90 %
// with multiplier 1) (§6.8.7).
func TestTransmitIntervals(t *testing.T) {
	tests := []struct {
		name     string
		profile  Profile
		up       bool
		remoteRx time.Duration
		base     time.Duration
		top      float64
	}{
		{"down sends at 1 s", fastProfile, false, 100 * time.Millisecond, time.Second, 1},
		{"up sends at 100 ms", fastProfile, true, 100 * time.Millisecond, 100 * time.Millisecond, 1},
		{"peer wants 300 ms", fastProfile, true, 300 * time.Millisecond, 300 * time.Millisecond, 1},
		{"slow profile down", Profile{ReceiveInterval: time.Second, TransmitInterval: 2 * time.Second, DetectMultiplier: 3}, false, 100 * time.Millisecond, 2 * time.Second, 1},
		{"multiplier 1", Profile{ReceiveInterval: 100 * time.Millisecond, TransmitInterval: 100 * time.Millisecond, DetectMultiplier: 1}, true, 100 * time.Millisecond, 100 * time.Millisecond, 0.9},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestSession(t, tc.profile)
			now := t0
			state := StateDown
			if tc.up {
				state = StateInit
			}
			// Final ends the Poll Sequence that follows Up.
			mustReceive(t, s, now, from(state, map[bool]uint32{true: ourDiscr, false: 0}[tc.up], func(p *Packet) {
				p.RequiredMinRxInterval, p.Final = tc.remoteRx, true
			}))
			mustReceive(t, s, now, from(map[bool]State{true: StateUp, false: StateDown}[tc.up], ourDiscr, func(p *Packet) {
				p.RequiredMinRxInterval, p.Final = tc.remoteRx, true
			}))
			if s.Info().Polling {
				t.Fatal("still polling")
			}
			if got := s.TxInterval(); got != tc.base {
				t.Fatalf("interval %v, want %v", got, tc.base)
			}
			lo, hi := time.Duration(float64(tc.base)*0.75), time.Duration(float64(tc.base)*tc.top)
			var minSeen, maxSeen time.Duration = 1 << 62, 0
			for i := 0; i < 2000; i++ {
				now = s.Info().NextTransmit
				if next := s.Next(); next.After(now) {
					t.Fatalf("Next %v is after the transmission due at %v", next, now)
				}
				st := s.Tick(now)
				if !st.Send {
					t.Fatalf("tick at the transmission time sent nothing")
				}
				gap := s.Info().NextTransmit.Sub(now)
				minSeen, maxSeen = min(minSeen, gap), max(maxSeen, gap)
				if gap < lo || gap > hi {
					t.Fatalf("gap %v outside [%v, %v]", gap, lo, hi)
				}
				// Keep the session alive.
				mustReceive(t, s, now, from(s.State(), ourDiscr, func(p *Packet) { p.RequiredMinRxInterval = tc.remoteRx }))
			}
			t.Logf("gaps %v–%v of %v", minSeen, maxSeen, tc.base)
			if spread := maxSeen - minSeen; spread < (hi-lo)/2 {
				t.Errorf("little jitter: %v–%v", minSeen, maxSeen)
			}
		})
	}
}

func TestPassive(t *testing.T) {
	s := newTestSession(t, Profile{ReceiveInterval: 100 * time.Millisecond, TransmitInterval: 100 * time.Millisecond, DetectMultiplier: 3, Passive: true})
	if next := s.Next(); !next.IsZero() {
		t.Fatalf("a passive session wants a tick at %v", next)
	}
	if st := s.Tick(t0.Add(10 * time.Second)); st.Send {
		t.Fatal("a passive session sent before hearing its peer")
	}
	st := mustReceive(t, s, t0.Add(10*time.Second), from(StateDown, 0))
	if !st.Send || st.Packet.State != StateInit {
		t.Fatalf("a passive session did not answer its peer: %+v", st)
	}
	// The peer falls silent: after the detection time the session forgets
	// it and is silent again.
	s.Tick(t0.Add(20 * time.Second))
	if s.State() != StateDown {
		t.Fatalf("state %s", s.State())
	}
	if next := s.Next(); !next.IsZero() {
		t.Fatalf("a passive session that lost its peer wants a tick at %v", next)
	}
}

func TestNoTransmission(t *testing.T) {
	tests := []struct {
		name string
		pkt  func(*Packet)
		up   bool
	}{
		{"peer requires no packets (required min rx 0)", func(p *Packet) { p.RequiredMinRxInterval = 0 }, false},
		{"peer in demand mode, both up", func(p *Packet) { p.Demand = true }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestSession(t, fastProfile)
			if tc.up {
				bringTo(t, s, StateUp)
				mustReceive(t, s, t0, from(StateUp, ourDiscr, func(p *Packet) { p.Final = true }))
			}
			mustReceive(t, s, t0, from(map[bool]State{true: StateUp, false: StateDown}[tc.up], map[bool]uint32{true: ourDiscr}[tc.up], tc.pkt))
			for now := t0; now.Before(t0.Add(5 * time.Second)); now = now.Add(50 * time.Millisecond) {
				if st := s.Tick(now); st.Send {
					t.Fatalf("sent at %v: %+v", now.Sub(t0), st.Packet)
				}
				if tc.up {
					// Demand mode: our detection keeps running only
					// while packets come; feed it.
					mustReceive(t, s, now, from(StateUp, ourDiscr, tc.pkt))
				}
			}
			// A Poll is answered even so (§6.8.7).
			st := mustReceive(t, s, t0.Add(5*time.Second), from(s.State(), map[bool]uint32{true: ourDiscr}[tc.up], tc.pkt, func(p *Packet) { p.Poll = true }))
			if !st.Send || !st.Packet.Final || st.Packet.Poll {
				t.Errorf("poll not answered with Final: %+v", st)
			}
		})
	}
}

// TestPollSequence: P on every packet until F comes back; a slower
// transmission and a shorter detection wait for the Final (§6.8.3).
func TestPollSequence(t *testing.T) {
	s := newTestSession(t, fastProfile)
	st := mustReceive(t, s, t0, from(StateInit, ourDiscr, func(p *Packet) { p.DesiredMinTxInterval = time.Second }))
	if s.State() != StateUp || !st.Packet.Poll || st.Packet.DesiredMinTxInterval != 100*time.Millisecond {
		t.Fatalf("going Up: state %s, packet %+v; want a Poll with tx 100ms", s.State(), st.Packet)
	}
	now := t0
	for i := 0; i < 3; i++ {
		now = s.Next()
		if st := s.Tick(now); !st.Send || !st.Packet.Poll || st.Packet.Final {
			t.Fatalf("packet %d during the poll: %+v", i, st.Packet)
		}
	}
	mustReceive(t, s, now, from(StateUp, ourDiscr, func(p *Packet) { p.Final = true }))
	if s.Info().Polling || s.Info().Stats.PollsDone != 1 {
		t.Fatalf("Final did not end the poll: %+v", s.Info())
	}
	now = s.Next()
	if st := s.Tick(now); st.Packet.Poll {
		t.Fatalf("Poll after the Final: %+v", st.Packet)
	}

	// Slower: 100 → 400 ms tx, 100 → 50 ms rx.
	slower := Profile{ReceiveInterval: 50 * time.Millisecond, TransmitInterval: 400 * time.Millisecond, DetectMultiplier: 3}
	if err := s.SetProfile(now, slower); err != nil {
		t.Fatal(err)
	}
	info := s.Info()
	if !info.Polling || info.AdvertisedTx != 400*time.Millisecond || info.AdvertisedRx != 50*time.Millisecond {
		t.Fatalf("after SetProfile: %+v", info)
	}
	if info.TxInterval != 100*time.Millisecond || info.DetectionTime != 300*time.Millisecond {
		t.Fatalf("the old rates must hold until the Final: tx %v, detection %v", info.TxInterval, info.DetectionTime)
	}
	now = s.Next()
	if st := s.Tick(now); !st.Packet.Poll || st.Packet.DesiredMinTxInterval != 400*time.Millisecond || st.Packet.RequiredMinRxInterval != 50*time.Millisecond {
		t.Fatalf("poll packet %+v", st.Packet)
	}
	mustReceive(t, s, now, from(StateUp, ourDiscr, func(p *Packet) { p.Final, p.RequiredMinRxInterval = true, 50*time.Millisecond }))
	info = s.Info()
	if info.Polling || info.TxInterval != 400*time.Millisecond || info.DetectionTime != 300*time.Millisecond {
		t.Fatalf("after the Final: polling %v, tx %v, detection %v; want false, 400ms, 300ms (3 × the peer's 100 ms)", info.Polling, info.TxInterval, info.DetectionTime)
	}

	// Faster takes effect at once: 400 → 100 ms tx, 50 → 500 ms rx.
	if err := s.SetProfile(now, Profile{ReceiveInterval: 500 * time.Millisecond, TransmitInterval: 100 * time.Millisecond, DetectMultiplier: 3}); err != nil {
		t.Fatal(err)
	}
	if info := s.Info(); info.TxInterval != 100*time.Millisecond || info.DetectionTime != 1500*time.Millisecond {
		t.Fatalf("a faster tx and a longer detection apply at once: tx %v, detection %v", info.TxInterval, info.DetectionTime)
	}

	// A Poll from the peer is answered at once with F and without P,
	// even while our own poll is pending.
	st = mustReceive(t, s, now.Add(time.Millisecond), from(StateUp, ourDiscr, func(p *Packet) { p.Poll = true }))
	if !st.Send || !st.Packet.Final || st.Packet.Poll {
		t.Fatalf("answer to a Poll: %+v", st)
	}
	if _, err := st.Packet.Marshal(); err != nil {
		t.Fatal(err)
	}
}

func TestPollNotWhileDown(t *testing.T) {
	s := newTestSession(t, fastProfile)
	if err := s.SetProfile(t0, Profile{ReceiveInterval: 200 * time.Millisecond, TransmitInterval: 200 * time.Millisecond, DetectMultiplier: 3}); err != nil {
		t.Fatal(err)
	}
	if info := s.Info(); info.Polling || info.AdvertisedTx != time.Second || info.AdvertisedRx != 200*time.Millisecond {
		t.Fatalf("a Down session changed timers: %+v", info)
	}
	if err := s.SetProfile(t0, Profile{}); !errors.Is(err, ErrProfile) {
		t.Fatalf("an invalid profile: %v", err)
	}
}

func TestAdminDown(t *testing.T) {
	s := newTestSession(t, fastProfile)
	bringTo(t, s, StateUp)
	st := s.AdminDown(t0.Add(time.Second))
	if st.Transition == nil || st.Transition.To != StateAdminDown || st.Transition.PeerFailed() {
		t.Fatalf("AdminDown transition %+v", st.Transition)
	}
	if !st.Send || st.Packet.State != StateAdminDown || st.Packet.Diag != DiagAdminDown {
		t.Fatalf("AdminDown packet %+v", st.Packet)
	}
	if st := s.Tick(t0.Add(time.Hour)); st.Transition != nil {
		t.Fatalf("AdminDown timed out: %+v", st.Transition)
	}
	st = s.Enable(t0.Add(time.Hour))
	if st.Transition == nil || st.Transition.To != StateDown {
		t.Fatalf("Enable: %+v", st.Transition)
	}
	mustReceive(t, s, t0.Add(time.Hour), from(StateDown, 0))
	if s.State() != StateInit {
		t.Fatalf("after Enable the handshake does not start: %s", s.State())
	}
}

func TestNewSessionErrors(t *testing.T) {
	if _, err := NewSession(t0, fastProfile, 0, nil); !errors.Is(err, ErrMyDiscr) {
		t.Errorf("discriminator 0: %v", err)
	}
	if _, err := NewSession(t0, Profile{TransmitInterval: time.Second, ReceiveInterval: time.Second}, 1, nil); !errors.Is(err, ErrProfile) {
		t.Errorf("multiplier 0: %v", err)
	}
}

// FuzzSession drives a session with a byte-coded sequence of events and
// checks invariants that hold whatever the peer sends: every packet the
// session asks to send marshals (so never both P and F), transitions
// follow the RFC's edges, and time never needs to run backwards.
func FuzzSession(f *testing.F) {
	f.Add([]byte{1, 1, 0, 3, 1, 2, 1, 3, 0, 0, 0, 0})
	f.Add([]byte{1, 1, 0, 3, 1, 2, 1, 3, 0, 2, 5, 5, 5, 0, 0, 3, 4, 1, 0, 0, 1, 0, 0})
	f.Add([]byte{2, 9, 9, 1, 1, 1, 0, 3, 1, 0x20, 1, 3, 3, 0, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		next := func() byte {
			if len(ops) == 0 {
				return 0
			}
			b := ops[0]
			ops = ops[1:]
			return b
		}
		ms := func(b byte) time.Duration { return time.Duration(b%50+1) * 10 * time.Millisecond }
		prof := func() Profile {
			return Profile{ReceiveInterval: ms(next()), TransmitInterval: ms(next()), DetectMultiplier: next()%5 + 1, Passive: next()%2 == 1}
		}
		s, err := NewSession(t0, prof(), ourDiscr, rand.New(rand.NewPCG(1, 2)))
		if err != nil {
			t.Fatal(err)
		}
		now := t0
		allowed := map[[2]State]bool{
			{StateDown, StateInit}: true, {StateDown, StateUp}: true, {StateInit, StateUp}: true,
			{StateInit, StateDown}: true, {StateUp, StateDown}: true, {StateAdminDown, StateDown}: true,
			{StateDown, StateAdminDown}: true, {StateInit, StateAdminDown}: true, {StateUp, StateAdminDown}: true,
		}
		check := func(st Step, what string) {
			if st.Send {
				if _, err := st.Packet.Marshal(); err != nil {
					t.Fatalf("%s: session sent an invalid packet %+v: %v", what, st.Packet, err)
				}
				if st.Packet.State != s.State() {
					t.Fatalf("%s: packet state %s, session %s", what, st.Packet.State, s.State())
				}
			}
			if tr := st.Transition; tr != nil && !allowed[[2]State{tr.From, tr.To}] {
				t.Fatalf("%s: transition %s -> %s", what, tr.From, tr.To)
			}
		}
		for steps := 0; len(ops) > 0 && steps < 1000; steps++ {
			switch next() % 6 {
			case 0: // time passes to the next deadline, or a little
				if n := s.Next(); !n.IsZero() && n.After(now) && next()%2 == 0 {
					now = n
				} else {
					now = now.Add(ms(next()))
				}
				check(s.Tick(now), "Tick")
			case 1: // a packet from the peer
				flags := next()
				p := Packet{
					State: State(next() % 4), Diag: Diag(next() % 9), DetectMult: next()%5 + 1,
					MyDiscriminator: theirDiscr, Poll: flags&1 != 0, Final: flags&2 != 0 && flags&1 == 0, Demand: flags&4 != 0,
					DesiredMinTxInterval: ms(next()), RequiredMinRxInterval: ms(next()),
				}
				if flags&8 != 0 {
					p.RequiredMinRxInterval = 0
				}
				if p.State != StateDown && p.State != StateAdminDown || flags&16 != 0 {
					p.YourDiscriminator = ourDiscr
				}
				if flags&32 != 0 {
					p.YourDiscriminator = ourDiscr + 1
				}
				adminDown := s.State() == StateAdminDown
				st, err := s.Receive(now, p)
				if (err != nil) != (p.YourDiscriminator == ourDiscr+1) {
					t.Fatalf("Receive(%+v): %v", p, err)
				}
				check(st, "Receive")
				// §6.8.6 discards the packet in AdminDown before the
				// Poll is looked at.
				if p.Poll && !adminDown && err == nil && (!st.Send || !st.Packet.Final) {
					t.Fatalf("a Poll was not answered with a Final: %+v", st)
				}
			case 2:
				if err := s.SetProfile(now, prof()); err != nil {
					t.Fatal(err)
				}
			case 3:
				check(s.AdminDown(now), "AdminDown")
			case 4:
				check(s.Enable(now), "Enable")
			case 5:
				if n := s.Next(); !n.IsZero() && n.Before(now.Add(-time.Hour)) {
					t.Fatalf("Next %v lies far in the past", n)
				}
			}
			if info := s.Info(); info.State == StateUp && info.TxInterval <= 0 {
				t.Fatalf("Up with tx interval %v", info.TxInterval)
			}
		}
	})
}
