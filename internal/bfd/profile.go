package bfd

import (
	"errors"
	"fmt"
	"time"

	"github.com/barelb/barelb/api/v1beta1"
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

// ErrProfile is wrapped by the errors of Validate and ProfileFromSpec.
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

// ProfileFromSpec turns a BFDProfile's spec into a Profile, with the
// API's defaults for unset fields. A spec that enables echo mode is
// refused: this implementation has no echo function. EchoInterval is
// ignored, and so is MinimumTTL: single-hop BFD accepts only TTL 255
// (RFC 5881 §5).
func ProfileFromSpec(spec v1beta1.BFDProfileSpec) (Profile, error) {
	p := DefaultProfile()
	if spec.EchoMode != nil && *spec.EchoMode {
		return Profile{}, fmt.Errorf("%w: echo mode is not supported", ErrProfile)
	}
	if spec.ReceiveInterval != nil {
		p.ReceiveInterval = time.Duration(*spec.ReceiveInterval) * time.Millisecond
	}
	if spec.TransmitInterval != nil {
		p.TransmitInterval = time.Duration(*spec.TransmitInterval) * time.Millisecond
	}
	if spec.DetectMultiplier != nil {
		if *spec.DetectMultiplier == 0 || *spec.DetectMultiplier > 255 {
			return Profile{}, fmt.Errorf("%w: detect multiplier %d is outside 1–255", ErrProfile, *spec.DetectMultiplier)
		}
		p.DetectMultiplier = uint8(*spec.DetectMultiplier)
	}
	if spec.PassiveMode != nil {
		p.Passive = *spec.PassiveMode
	}
	if err := p.Validate(); err != nil {
		return Profile{}, err
	}
	return p, nil
}
