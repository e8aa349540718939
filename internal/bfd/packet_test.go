package bfd

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// frrDown is a packet as FRR's bfdd sends it before the session comes up:
// version 1, state Down, detect mult 3, my discriminator 0x8c9c4f42, your
// discriminator 0, desired min tx 1 s, required min rx 100 ms, required min
// echo rx 50 ms.
const frrDown = "2040031" + "8" + "8c9c4f42" + "00000000" + "000f4240" + "000186a0" + "0000c350"

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestUnmarshal(t *testing.T) {
	p, err := Unmarshal(mustHex(t, frrDown))
	if err != nil {
		t.Fatal(err)
	}
	want := Packet{State: StateDown, DetectMult: 3, MyDiscriminator: 0x8c9c4f42,
		DesiredMinTxInterval: time.Second, RequiredMinRxInterval: 100 * time.Millisecond, RequiredMinEchoRxInterval: 50 * time.Millisecond}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Fatalf("Unmarshal (-want +got):\n%s", diff)
	}
}

// TestUnmarshalRejects covers the checks of RFC 5880 §6.8.6.
func TestUnmarshalRejects(t *testing.T) {
	base := func(t *testing.T) []byte { return mustHex(t, frrDown) }
	tests := []struct {
		name    string
		edit    func([]byte) []byte
		wantErr error
		wantMsg string
	}{
		{"short datagram", func(b []byte) []byte { return b[:23] }, ErrLength, "shorter than a control packet"},
		{"version 0", func(b []byte) []byte { b[0] &^= 0xe0; return b }, ErrVersion, ""},
		{"version 2", func(b []byte) []byte { b[0] = 2<<5 | b[0]&0x1f; return b }, ErrVersion, ""},
		{"length field below 24", func(b []byte) []byte { b[3] = 23; return b }, ErrLength, "below the minimum 24"},
		{"length field beyond the datagram", func(b []byte) []byte { b[3] = 25; return b }, ErrLength, "exceeds the datagram"},
		{"detect mult 0", func(b []byte) []byte { b[2] = 0; return b }, ErrDetectMult, ""},
		{"multipoint", func(b []byte) []byte { b[1] |= flagMultipnt; return b }, ErrMultipoint, ""},
		{"my discriminator 0", func(b []byte) []byte { copy(b[4:8], []byte{0, 0, 0, 0}); return b }, ErrMyDiscr, ""},
		{"your discriminator 0 in Up", func(b []byte) []byte { b[1] = byte(StateUp) << 6; return b }, ErrYourDiscr, "state Up"},
		{"your discriminator 0 in Init", func(b []byte) []byte { b[1] = byte(StateInit) << 6; return b }, ErrYourDiscr, "state Init"},
		{"auth bit with a length of 24", func(b []byte) []byte { b[1] |= flagAuth; return b }, ErrLength, "below the minimum 26"},
		{"keyed SHA1 auth", func(b []byte) []byte {
			b[1] |= flagAuth
			auth := append([]byte{4, 28, 1, 0, 0, 0, 0, 1}, make([]byte, 20)...)
			b = append(b, auth...)
			b[3] = byte(len(b))
			return b
		}, ErrAuthentication, "KeyedSHA1"},
		{"simple password auth", func(b []byte) []byte {
			b[1] |= flagAuth
			b = append(b, 1, 7, 1, 'p', 'a', 's', 's')
			b[3] = byte(len(b))
			return b
		}, ErrAuthentication, "SimplePassword"},
		{"auth section longer than the packet", func(b []byte) []byte {
			b[1] |= flagAuth
			b = append(b, 2, 24, 1)
			b[3] = byte(len(b))
			return b
		}, ErrAuthentication, "does not fit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Unmarshal(tc.edit(base(t)))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not say %q", err, tc.wantMsg)
			}
		})
	}
}

func TestUnmarshalAccepts(t *testing.T) {
	tests := []struct {
		name string
		edit func([]byte) []byte
	}{
		{"trailing bytes past the length field", func(b []byte) []byte { return append(b, 1, 2, 3) }},
		{"your discriminator 0 in AdminDown", func(b []byte) []byte { b[1] = 0; return b }},
		{"poll and final both (not ours to send, not a reason to drop)", func(b []byte) []byte { b[1] |= flagPoll | flagFinal; return b }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Unmarshal(tc.edit(mustHex(t, frrDown))); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestMarshal(t *testing.T) {
	good := Packet{Diag: DiagControlDetectionExpired, State: StateUp, Poll: true, DetectMult: 3, MyDiscriminator: 7, YourDiscriminator: 9,
		DesiredMinTxInterval: 100 * time.Millisecond, RequiredMinRxInterval: 100 * time.Millisecond}
	b, err := good.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := mustHex(t, "21e"+"00318"+"00000007"+"00000009"+"000186a0"+"000186a0"+"00000000")
	if !bytes.Equal(b, want) {
		t.Fatalf("got  %x\nwant %x", b, want)
	}
	tests := []struct {
		name    string
		edit    func(*Packet)
		wantErr error
	}{
		{"poll and final", func(p *Packet) { p.Final = true }, ErrPollFinal},
		{"detect mult 0", func(p *Packet) { p.DetectMult = 0 }, ErrDetectMult},
		{"my discriminator 0", func(p *Packet) { p.MyDiscriminator = 0 }, ErrMyDiscr},
		{"your discriminator 0 in Up", func(p *Packet) { p.YourDiscriminator = 0 }, ErrYourDiscr},
		{"diag 32", func(p *Packet) { p.Diag = 32 }, ErrField},
		{"state 4", func(p *Packet) { p.State = 4 }, ErrField},
		{"interval below a microsecond", func(p *Packet) { p.DesiredMinTxInterval = time.Nanosecond }, ErrField},
		{"interval over 2^32 µs", func(p *Packet) { p.RequiredMinRxInterval = 1 << 32 * time.Microsecond }, ErrField},
		{"negative interval", func(p *Packet) { p.RequiredMinEchoRxInterval = -time.Microsecond }, ErrField},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := good
			tc.edit(&p)
			if _, err := p.Marshal(); !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestStrings(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{StateAdminDown.String(), "AdminDown"}, {StateUp.String(), "Up"}, {State(9).String(), "State(9)"},
		{DiagNeighborSignaledDown.String(), "NeighborSignaledSessionDown"}, {Diag(30).String(), "Diag(30)"},
		{AuthType(2).String(), "KeyedMD5"}, {AuthType(9).String(), "AuthType(9)"},
		{Key{Local: addrA6, Remote: addrB6, Interface: "eth0"}.String(), "2001:db8:100::1->2001:db8:100::2%eth0"},
	} {
		if tc.got != tc.want {
			t.Errorf("%q, want %q", tc.got, tc.want)
		}
	}
}

// FuzzUnmarshal: Unmarshal never panics, and what it accepts marshals back
// to the same first 24 bytes (with the length field 24) and decodes to
// the same packet.
func FuzzUnmarshal(f *testing.F) {
	f.Add(mustHex(f, frrDown))
	f.Add(mustHex(f, "21e"+"00318"+"00000007"+"00000009"+"000186a0"+"000186a0"+"00000000"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Unmarshal(b)
		if err != nil {
			return
		}
		if p.Poll && p.Final {
			return // accepted on receipt, never sent
		}
		out, err := p.Marshal()
		if err != nil {
			t.Fatalf("accepted %x but cannot marshal %+v: %v", b, p, err)
		}
		want := append([]byte(nil), b[:PacketLen]...)
		want[3] = PacketLen
		if !bytes.Equal(out, want) {
			t.Fatalf("round trip of %x gave %x", want, out)
		}
		q, err := Unmarshal(out)
		if err != nil {
			t.Fatalf("re-decoding %x: %v", out, err)
		}
		if diff := cmp.Diff(p, q); diff != "" {
			t.Fatalf("re-decoding (-want +got):\n%s", diff)
		}
	})
}
