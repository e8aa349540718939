package bfd

import (
	"errors"
	"testing"
	"time"

	"github.com/barelb/barelb/api/v1beta1"
)

func TestProfileFromSpec(t *testing.T) {
	u := func(v uint32) *uint32 { return &v }
	b := func(v bool) *bool { return &v }
	tests := []struct {
		name    string
		spec    v1beta1.BFDProfileSpec
		want    Profile
		wantErr bool
	}{
		{"defaults", v1beta1.BFDProfileSpec{}, Profile{ReceiveInterval: 300 * time.Millisecond, TransmitInterval: 300 * time.Millisecond, DetectMultiplier: 3}, false},
		{"all set", v1beta1.BFDProfileSpec{ReceiveInterval: u(100), TransmitInterval: u(150), DetectMultiplier: u(5), PassiveMode: b(true), EchoMode: b(false), EchoInterval: u(50), MinimumTTL: u(254)},
			Profile{ReceiveInterval: 100 * time.Millisecond, TransmitInterval: 150 * time.Millisecond, DetectMultiplier: 5, Passive: true}, false},
		{"echo mode", v1beta1.BFDProfileSpec{EchoMode: b(true)}, Profile{}, true},
		{"multiplier 0", v1beta1.BFDProfileSpec{DetectMultiplier: u(0)}, Profile{}, true},
		{"multiplier 256", v1beta1.BFDProfileSpec{DetectMultiplier: u(256)}, Profile{}, true},
		{"receive interval 0", v1beta1.BFDProfileSpec{ReceiveInterval: u(0)}, Profile{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ProfileFromSpec(tc.spec)
			if tc.wantErr {
				if !errors.Is(err, ErrProfile) {
					t.Fatalf("error %v, want ErrProfile", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}
