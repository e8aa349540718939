package bfd

import (
	"errors"
	"fmt"
	"time"
)

// Profile holds the timers of a session, the plain form of a BFDProfile.
type Profile struct {
	// ReceiveInterval is bfd.RequiredMinRxInterval: the shortest interval
	// between received control packets this side supports.
	ReceiveInterval time.Duration
	// TransmitInterval is bfd.DesiredMinTxInterval once the session is Up
	// (while it is not, at least one second is used, RFC 5880 §6.8.3).
	TransmitInterval time.Duration
	// DetectMultiplier is bfd.DetectMult.
	DetectMultiplier uint8
	// Passive sessions send nothing until the peer's first packet arrives
	// (RFC 5880 §6.1).
	Passive bool
	// MinimumTTL is the least TTL (hop limit) a multihop session accepts
	// on a received packet; 0 means DefaultMultihopMinTTL. Single-hop
	// sessions ignore it: they accept 255 only (RFC 5881 §5).
	MinimumTTL uint8
}

// minTTL is the least TTL a multihop session with p accepts.
func (p Profile) minTTL() int {
	if p.MinimumTTL == 0 {
		return DefaultMultihopMinTTL
	}
	return int(p.MinimumTTL)
}

// The BFDProfile defaults (api/v1beta1).
const (
	DefaultInterval         = 300 * time.Millisecond
	DefaultDetectMultiplier = 3
)

// slowTxInterval is the least bfd.DesiredMinTxInterval while a session is
// not Up (RFC 5880 §6.8.3).
const slowTxInterval = time.Second

// DefaultProfile is a BFDProfile with no fields set: 300 ms both ways,
// multiplier 3, active.
func DefaultProfile() Profile {
	return Profile{ReceiveInterval: DefaultInterval, TransmitInterval: DefaultInterval, DetectMultiplier: DefaultDetectMultiplier}
}

// ErrProfile is wrapped by the errors of Validate and of
// config.BFDProfile.
var ErrProfile = errors.New("invalid BFD profile")

// Validate checks that the intervals are positive whole microseconds that
// fit the packet and the multiplier is not zero.
func (p Profile) Validate() error {
	for _, iv := range []struct {
		name string
		d    time.Duration
	}{{"receive interval", p.ReceiveInterval}, {"transmit interval", p.TransmitInterval}} {
		if iv.d <= 0 {
			return fmt.Errorf("%w: %s %v is not positive", ErrProfile, iv.name, iv.d)
		}
		if _, err := toUsec(iv.d); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrProfile, iv.name, err)
		}
	}
	if p.DetectMultiplier == 0 {
		return fmt.Errorf("%w: detect multiplier is zero", ErrProfile)
	}
	return nil
}
