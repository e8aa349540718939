package config

import (
	"fmt"
	"time"

	"github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/bfd"
)

// BFDProfile turns a BFDProfile's spec into the wire package's Profile, with the
// API's defaults for unset fields. A spec that enables echo mode is
// refused: this implementation has no echo function. EchoInterval is
// ignored. MinimumTTL is the least TTL a multihop session (a peer with
// ebgpMultiHop) accepts, as MetalLB has it; single-hop BFD accepts only
// TTL 255 (RFC 5881 §5) whatever it says.
func BFDProfile(spec v1beta1.BFDProfileSpec) (bfd.Profile, error) {
	p := bfd.DefaultProfile()
	if spec.EchoMode != nil && *spec.EchoMode {
		return bfd.Profile{}, fmt.Errorf("%w: echo mode is not supported", bfd.ErrProfile)
	}
	if spec.ReceiveInterval != nil {
		p.ReceiveInterval = time.Duration(*spec.ReceiveInterval) * time.Millisecond
	}
	if spec.TransmitInterval != nil {
		p.TransmitInterval = time.Duration(*spec.TransmitInterval) * time.Millisecond
	}
	if spec.DetectMultiplier != nil {
		if *spec.DetectMultiplier == 0 || *spec.DetectMultiplier > 255 {
			return bfd.Profile{}, fmt.Errorf("%w: detect multiplier %d is outside 1–255", bfd.ErrProfile, *spec.DetectMultiplier)
		}
		p.DetectMultiplier = uint8(*spec.DetectMultiplier)
	}
	if spec.PassiveMode != nil {
		p.Passive = *spec.PassiveMode
	}
	if spec.MinimumTTL != nil {
		if *spec.MinimumTTL == 0 || *spec.MinimumTTL > 254 {
			return bfd.Profile{}, fmt.Errorf("%w: minimum TTL %d is outside 1–254", bfd.ErrProfile, *spec.MinimumTTL)
		}
		p.MinimumTTL = uint8(*spec.MinimumTTL)
	}
	if err := p.Validate(); err != nil {
		return bfd.Profile{}, err
	}
	return p, nil
}
