package bfd

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Session is one BFD session's state machine (RFC 5880 §6.8) in
// asynchronous mode, without echo or authentication. It is a pure value:
// the caller passes the time into every method, delivers received packets
// with Receive, calls Tick when Next says so, and sends what the returned
// Step carries. A Session is not safe for concurrent use.
type Session struct {
	profile    Profile
	localDiscr uint32
	state      State
	diag       Diag

	// advTx and advRx are bfd.DesiredMinTxInterval and
	// bfd.RequiredMinRxInterval as carried in our packets.
	advTx, advRx time.Duration
	// effTx and effRx are the values that govern our transmission rate and
	// our detection time; they lag advTx and advRx while a Poll Sequence
	// that slows transmission or shortens detection is outstanding
	// (§6.8.3).
	effTx, effRx time.Duration
	polling      bool

	remoteDiscr      uint32
	remoteState      State
	remoteDiag       Diag
	remoteDemand     bool
	remoteMinRx      time.Duration
	remoteDesiredTx  time.Duration
	remoteDetectMult uint8

	nextTx   time.Time     // zero while nothing is scheduled
	txBase   time.Duration // the interval, before jitter, nextTx was set with
	detectAt time.Time     // zero while the detection timer is not armed
	rnd      *rand.Rand

	stats SessionStats
}

// SessionStats counts a session's traffic and transitions.
type SessionStats struct {
	PacketsIn, PacketsOut uint64
	// Discarded counts received packets the session refused (a wrong your
	// discriminator).
	Discarded uint64
	// Ups and Downs count transitions into Up and out of Up.
	Ups, Downs uint64
	// PollsDone counts completed Poll Sequences of this side.
	PollsDone uint64
}

// Step is what a Session asks its caller to do after an event.
type Step struct {
	// Send is set when Packet must be sent now.
	Send   bool
	Packet Packet
	// Transition is set when the session state changed.
	Transition *Transition
}

// Transition is a change of the session state.
type Transition struct {
	From, To State
	// Diag is the local diagnostic: why the state changed.
	Diag Diag
	// RemoteState and RemoteDiag are from the peer's last packet.
	RemoteState State
	RemoteDiag  Diag
	At          time.Time
}

// PeerFailed tells whether the transition is a failure the client protocol
// must act on: leaving Up for any reason other than the peer signalling
// AdminDown (RFC 5882 §3.2) or our own administrative action.
func (t Transition) PeerFailed() bool {
	return t.From == StateUp && t.To == StateDown && t.RemoteState != StateAdminDown
}

// ErrDiscriminator is returned by Receive for a packet whose your
// discriminator is not this session's.
var ErrDiscriminator = errors.New("your discriminator does not match the session")

// NewSession returns a session in state Down. localDiscr must not be zero
// and be unique among the system's sessions; rnd supplies the transmission
// jitter (nil: a randomly seeded source).
func NewSession(now time.Time, p Profile, localDiscr uint32, rnd *rand.Rand) (*Session, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if localDiscr == 0 {
		return nil, fmt.Errorf("%w: local discriminator", ErrMyDiscr)
	}
	if rnd == nil {
		rnd = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	s := &Session{profile: p, localDiscr: localDiscr, state: StateDown, rnd: rnd, remoteMinRx: time.Microsecond}
	s.advTx, s.advRx = max(slowTxInterval, p.TransmitInterval), p.ReceiveInterval
	s.effTx, s.effRx = s.advTx, s.advRx
	if !p.Passive {
		s.nextTx = now
	}
	return s, nil
}

// LocalDiscriminator is bfd.LocalDiscr.
func (s *Session) LocalDiscriminator() uint32 { return s.localDiscr }

// State is bfd.SessionState.
func (s *Session) State() State { return s.state }

// Next returns when Tick must be called next, or the zero time when
// nothing is pending (a passive session that has not heard its peer).
func (s *Session) Next() time.Time {
	next := s.detectAt
	if !s.nextTx.IsZero() && s.canTransmit() && (next.IsZero() || s.nextTx.Before(next)) {
		next = s.nextTx
	}
	return next
}

// Tick expires the detection timer and sends the periodic packet when
// their time has come.
func (s *Session) Tick(now time.Time) Step {
	var st Step
	if !s.detectAt.IsZero() && !now.Before(s.detectAt) {
		st.Transition = s.expire(now)
	}
	if !s.canTransmit() {
		s.nextTx = time.Time{}
		return st
	}
	if s.nextTx.IsZero() {
		s.nextTx = now
	}
	if st.Transition != nil || !now.Before(s.nextTx) {
		s.send(now, &st, false)
	}
	return st
}

// expire handles the detection time passing without a valid packet.
func (s *Session) expire(now time.Time) *Transition {
	s.detectAt = time.Time{}
	// bfd.RemoteDiscr is zeroed when the detection time passes (§6.8.1);
	// a passive session then falls silent again.
	s.remoteDiscr = 0
	if s.state != StateInit && s.state != StateUp {
		return nil
	}
	return s.setState(now, StateDown, DiagControlDetectionExpired)
}

// Receive processes a packet that passed Unmarshal (RFC 5880 §6.8.6). A
// packet for another discriminator returns ErrDiscriminator and changes
// nothing.
func (s *Session) Receive(now time.Time, p Packet) (Step, error) {
	var st Step
	if p.YourDiscriminator != 0 && p.YourDiscriminator != s.localDiscr {
		s.stats.Discarded++
		return st, fmt.Errorf("%w: packet for %d, session %d", ErrDiscriminator, p.YourDiscriminator, s.localDiscr)
	}
	s.stats.PacketsIn++
	s.remoteDiscr = p.MyDiscriminator
	s.remoteState = p.State
	s.remoteDiag = p.Diag
	s.remoteDemand = p.Demand
	s.remoteMinRx = p.RequiredMinRxInterval
	s.remoteDesiredTx = p.DesiredMinTxInterval
	s.remoteDetectMult = p.DetectMult
	if p.Final && s.polling {
		s.polling = false
		s.effTx, s.effRx = s.advTx, s.advRx
		s.stats.PollsDone++
	}
	if s.state == StateAdminDown {
		return st, nil
	}
	switch {
	case p.State == StateAdminDown:
		if s.state != StateDown {
			st.Transition = s.setState(now, StateDown, DiagNeighborSignaledDown)
		}
	case s.state == StateDown && p.State == StateDown:
		st.Transition = s.setState(now, StateInit, s.diag)
	case s.state == StateDown && p.State == StateInit,
		s.state == StateInit && (p.State == StateInit || p.State == StateUp):
		st.Transition = s.setState(now, StateUp, DiagNone)
	case s.state == StateUp && p.State == StateDown:
		st.Transition = s.setState(now, StateDown, DiagNeighborSignaledDown)
	}
	s.detectAt = now.Add(s.detectionTime())
	switch {
	case p.Poll:
		// §6.8.7: answer at once, whatever the timers, state or demand.
		s.send(now, &st, true)
	case st.Transition != nil && s.canTransmit():
		s.send(now, &st, false)
	case s.canTransmit():
		// Start transmitting, or catch up with an interval the peer
		// just shortened.
		if s.nextTx.IsZero() || s.TxInterval() < s.txBase {
			if next := now.Add(s.txInterval()); s.nextTx.IsZero() || next.Before(s.nextTx) {
				s.nextTx = next
			}
			s.txBase = s.TxInterval()
		}
	}
	return st, nil
}

// SetProfile changes the timers. While the session is Up a change of the
// intervals starts a Poll Sequence (§6.8.3); a slower transmission or a
// shorter detection time takes effect only when it completes.
func (s *Session) SetProfile(now time.Time, p Profile) error {
	if err := p.Validate(); err != nil {
		return err
	}
	s.profile = p
	tx := p.TransmitInterval
	if s.state != StateUp {
		tx = max(slowTxInterval, tx)
	}
	s.setAdvertised(tx, p.ReceiveInterval)
	if !p.Passive && s.nextTx.IsZero() {
		s.nextTx = now
	}
	return nil
}

// AdminDown takes the session administratively down (§6.8.16): it sends
// AdminDown packets and ignores the peer until Enable.
func (s *Session) AdminDown(now time.Time) Step {
	var st Step
	if s.state == StateAdminDown {
		return st
	}
	st.Transition = s.setState(now, StateAdminDown, DiagAdminDown)
	s.detectAt = time.Time{}
	if s.canTransmit() {
		s.send(now, &st, false)
	}
	return st
}

// Enable ends AdminDown: the session goes Down and starts over.
func (s *Session) Enable(now time.Time) Step {
	var st Step
	if s.state != StateAdminDown {
		return st
	}
	st.Transition = s.setState(now, StateDown, DiagNone)
	s.remoteDiscr = 0
	if !s.profile.Passive {
		s.nextTx = now
	}
	return st
}

func (s *Session) setState(now time.Time, to State, diag Diag) *Transition {
	t := &Transition{From: s.state, To: to, Diag: diag, RemoteState: s.remoteState, RemoteDiag: s.remoteDiag, At: now}
	s.state, s.diag = to, diag
	switch {
	case to == StateUp:
		s.stats.Ups++
		s.setAdvertised(s.profile.TransmitInterval, s.profile.ReceiveInterval)
	case t.From == StateUp:
		s.stats.Downs++
		s.setAdvertised(max(slowTxInterval, s.profile.TransmitInterval), s.profile.ReceiveInterval)
	}
	return t
}

// setAdvertised changes the intervals in our packets, with a Poll Sequence
// when the session is Up.
func (s *Session) setAdvertised(tx, rx time.Duration) {
	if tx == s.advTx && rx == s.advRx {
		return
	}
	s.advTx, s.advRx = tx, rx
	if s.state != StateUp {
		s.polling = false
		s.effTx, s.effRx = tx, rx
		return
	}
	s.polling = true
	s.effTx = min(s.effTx, tx) // faster at once, slower after the poll
	s.effRx = max(s.effRx, rx) // longer detection at once, shorter after
}

func (s *Session) canTransmit() bool {
	switch {
	case s.remoteMinRx == 0:
		return false // the peer asks for no packets (§6.8.7)
	case s.profile.Passive && s.remoteDiscr == 0:
		return false // §6.8.7: a passive system waits for its peer
	case s.remoteDemand && s.state == StateUp && s.remoteState == StateUp && !s.polling:
		return false // the peer runs in Demand mode (§6.6)
	}
	return true
}

func (s *Session) send(now time.Time, st *Step, final bool) {
	st.Send = true
	st.Packet = s.packet(final)
	s.stats.PacketsOut++
	s.nextTx = now.Add(s.txInterval())
	s.txBase = s.TxInterval()
}

func (s *Session) packet(final bool) Packet {
	return Packet{
		Diag:                  s.diag,
		State:                 s.state,
		Poll:                  s.polling && !final,
		Final:                 final,
		DetectMult:            s.profile.DetectMultiplier,
		MyDiscriminator:       s.localDiscr,
		YourDiscriminator:     s.remoteDiscr,
		DesiredMinTxInterval:  s.advTx,
		RequiredMinRxInterval: s.advRx,
	}
}

// TxInterval is the transmission interval before jitter: the larger of
// our desired minimum and the peer's required minimum (§6.8.7).
func (s *Session) TxInterval() time.Duration { return max(s.effTx, s.remoteMinRx) }

// txInterval applies the jitter of §6.8.7: 75–100 % of the interval, or
// 75–90 % with a detect multiplier of one.
func (s *Session) txInterval() time.Duration {
	top := 0.25
	if s.profile.DetectMultiplier == 1 {
		top = 0.15
	}
	return time.Duration(float64(s.TxInterval()) * (0.75 + top*s.rnd.Float64()))
}

// DetectionTime is the remote's detect multiplier times the larger of our
// required minimum receive interval and the remote's desired minimum
// transmit interval (§6.8.4), zero before the first packet.
func (s *Session) DetectionTime() time.Duration { return s.detectionTime() }

func (s *Session) detectionTime() time.Duration {
	return time.Duration(s.remoteDetectMult) * max(s.effRx, s.remoteDesiredTx)
}

// Info is a snapshot of a session for metrics and debugging.
type Info struct {
	State, RemoteState  State
	Diag, RemoteDiag    Diag
	LocalDiscriminator  uint32
	RemoteDiscriminator uint32
	Polling             bool
	TxInterval          time.Duration
	DetectionTime       time.Duration
	RemoteMinRxInterval time.Duration
	RemoteDesiredMinTx  time.Duration
	RemoteDetectMult    uint8
	AdvertisedTx        time.Duration
	AdvertisedRx        time.Duration
	Stats               SessionStats
	DetectionDeadline   time.Time
	// NextTransmit is when the next periodic packet is due (zero: none).
	NextTransmit time.Time
}

// Info returns a snapshot of the session.
func (s *Session) Info() Info {
	return Info{
		State: s.state, RemoteState: s.remoteState, Diag: s.diag, RemoteDiag: s.remoteDiag,
		LocalDiscriminator: s.localDiscr, RemoteDiscriminator: s.remoteDiscr, Polling: s.polling,
		TxInterval: s.TxInterval(), DetectionTime: s.detectionTime(),
		RemoteMinRxInterval: s.remoteMinRx, RemoteDesiredMinTx: s.remoteDesiredTx, RemoteDetectMult: s.remoteDetectMult,
		AdvertisedTx: s.advTx, AdvertisedRx: s.advRx, Stats: s.stats, DetectionDeadline: s.detectAt, NextTransmit: s.nextTx,
	}
}
