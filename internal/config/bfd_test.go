package config

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/barelb/barelb/internal/bfd"

	"github.com/barelb/barelb/api/v1beta1"
)

func TestBFDProfile(t *testing.T) {
	u := func(v uint32) *uint32 { return &v }
	b := func(v bool) *bool { return &v }
	tests := []struct {
		name    string
		spec    v1beta1.BFDProfileSpec
		want    bfd.Profile
		wantErr bool
	}{
		{"defaults", v1beta1.BFDProfileSpec{}, bfd.Profile{ReceiveInterval: 300 * time.Millisecond, TransmitInterval: 300 * time.Millisecond, DetectMultiplier: 3}, false},
		{"all set", v1beta1.BFDProfileSpec{ReceiveInterval: u(100), TransmitInterval: u(150), DetectMultiplier: u(5), PassiveMode: b(true), EchoMode: b(false), EchoInterval: u(50), MinimumTTL: u(254)},
			bfd.Profile{ReceiveInterval: 100 * time.Millisecond, TransmitInterval: 150 * time.Millisecond, DetectMultiplier: 5, Passive: true, MinimumTTL: 254}, false},
		{"minimum TTL for multihop", v1beta1.BFDProfileSpec{MinimumTTL: u(250)},
			bfd.Profile{ReceiveInterval: 300 * time.Millisecond, TransmitInterval: 300 * time.Millisecond, DetectMultiplier: 3, MinimumTTL: 250}, false},
		{"minimum TTL 0", v1beta1.BFDProfileSpec{MinimumTTL: u(0)}, bfd.Profile{}, true},
		{"minimum TTL 255", v1beta1.BFDProfileSpec{MinimumTTL: u(255)}, bfd.Profile{}, true},
		{"echo mode", v1beta1.BFDProfileSpec{EchoMode: b(true)}, bfd.Profile{}, true},
		{"multiplier 0", v1beta1.BFDProfileSpec{DetectMultiplier: u(0)}, bfd.Profile{}, true},
		{"multiplier 256", v1beta1.BFDProfileSpec{DetectMultiplier: u(256)}, bfd.Profile{}, true},
		{"receive interval 0", v1beta1.BFDProfileSpec{ReceiveInterval: u(0)}, bfd.Profile{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := BFDProfile(tc.spec)
			if tc.wantErr {
				if !errors.Is(err, bfd.ErrProfile) {
					t.Fatalf("error %v, want ErrProfile", err)
				}
				return
			}
			if diff := cmp.Diff(tc.want, got); err != nil || diff != "" {
				t.Fatalf("error %v; profile (-want +got):\n%s", err, diff)
			}
		})
	}
}
