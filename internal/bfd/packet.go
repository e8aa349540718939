package bfd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// State is the session state of RFC 5880 §4.1 (Sta field) and §6.2.
type State uint8

// The session states, with their wire values.
const (
	StateAdminDown State = 0
	StateDown      State = 1
	StateInit      State = 2
	StateUp        State = 3
)

func (s State) String() string {
	switch s {
	case StateAdminDown:
		return "AdminDown"
	case StateDown:
		return "Down"
	case StateInit:
		return "Init"
	case StateUp:
		return "Up"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Diag is the diagnostic code of RFC 5880 §4.1: why the sender's session
// last changed state.
type Diag uint8

// The diagnostic codes of RFC 5880 §4.1.
const (
	DiagNone                    Diag = 0
	DiagControlDetectionExpired Diag = 1
	DiagEchoFailed              Diag = 2
	DiagNeighborSignaledDown    Diag = 3
	DiagForwardingPlaneReset    Diag = 4
	DiagPathDown                Diag = 5
	DiagConcatenatedPathDown    Diag = 6
	DiagAdminDown               Diag = 7
	DiagReverseConcatPathDown   Diag = 8
)

func (d Diag) String() string {
	switch d {
	case DiagNone:
		return "NoDiagnostic"
	case DiagControlDetectionExpired:
		return "ControlDetectionTimeExpired"
	case DiagEchoFailed:
		return "EchoFunctionFailed"
	case DiagNeighborSignaledDown:
		return "NeighborSignaledSessionDown"
	case DiagForwardingPlaneReset:
		return "ForwardingPlaneReset"
	case DiagPathDown:
		return "PathDown"
	case DiagConcatenatedPathDown:
		return "ConcatenatedPathDown"
	case DiagAdminDown:
		return "AdministrativelyDown"
	case DiagReverseConcatPathDown:
		return "ReverseConcatenatedPathDown"
	}
	return fmt.Sprintf("Diag(%d)", uint8(d))
}

// AuthType is the authentication type of RFC 5880 §4.1 (Auth Type field).
type AuthType uint8

func (a AuthType) String() string {
	switch a {
	case 0:
		return "Reserved"
	case 1:
		return "SimplePassword"
	case 2:
		return "KeyedMD5"
	case 3:
		return "MeticulousKeyedMD5"
	case 4:
		return "KeyedSHA1"
	case 5:
		return "MeticulousKeyedSHA1"
	}
	return fmt.Sprintf("AuthType(%d)", uint8(a))
}

// Version is the only BFD protocol version (RFC 5880 §4.1).
const Version = 1

// PacketLen is the length of a control packet without authentication.
const PacketLen = 24

const (
	authHeaderLen = 2
	flagPoll      = 0x20
	flagFinal     = 0x10
	flagCPI       = 0x08
	flagAuth      = 0x04
	flagDemand    = 0x02
	flagMultipnt  = 0x01
)

// Packet is a BFD control packet (RFC 5880 §4.1) without authentication
// section. The intervals are carried on the wire in microseconds.
type Packet struct {
	Diag  Diag
	State State
	// Poll and Final are the P and F bits of a Poll Sequence (§6.5).
	Poll, Final bool
	// ControlPlaneIndependent is the C bit.
	ControlPlaneIndependent bool
	// Demand is the D bit: the sender wants to run in Demand mode.
	Demand                bool
	DetectMult            uint8
	MyDiscriminator       uint32
	YourDiscriminator     uint32
	DesiredMinTxInterval  time.Duration
	RequiredMinRxInterval time.Duration
	// RequiredMinEchoRxInterval is zero from a system without echo.
	RequiredMinEchoRxInterval time.Duration
}

// The reasons Unmarshal and Marshal refuse a packet. Errors wrap one of
// them.
var (
	ErrVersion        = errors.New("unsupported BFD version")
	ErrLength         = errors.New("bad length")
	ErrDetectMult     = errors.New("detect multiplier is zero")
	ErrMultipoint     = errors.New("multipoint bit is set")
	ErrMyDiscr        = errors.New("my discriminator is zero")
	ErrYourDiscr      = errors.New("your discriminator is zero in a state other than Down or AdminDown")
	ErrAuthentication = errors.New("authentication is not supported")
	ErrPollFinal      = errors.New("poll and final bits both set")
	ErrField          = errors.New("field out of range")
)

// Unmarshal decodes a control packet and applies the checks of RFC 5880
// §6.8.6 that depend on the packet alone: version 1, a length field of at
// least 24 (26 with the A bit) that the datagram holds, a detect
// multiplier other than zero, the multipoint bit clear, a my
// discriminator other than zero, and a your discriminator other than zero
// unless the state is Down or AdminDown. A packet with the A bit set is
// rejected with ErrAuthentication naming its authentication type, as
// barelb does not configure authentication (§6.7). Bytes past the length
// field are ignored.
func Unmarshal(b []byte) (Packet, error) {
	var p Packet
	if len(b) < PacketLen {
		return p, fmt.Errorf("%w: datagram of %d bytes, shorter than a control packet (%d)", ErrLength, len(b), PacketLen)
	}
	if v := b[0] >> 5; v != Version {
		return p, fmt.Errorf("%w: %d", ErrVersion, v)
	}
	auth := b[1]&flagAuth != 0
	length := int(b[3])
	minLen := PacketLen
	if auth {
		minLen += authHeaderLen
	}
	if length < minLen {
		return p, fmt.Errorf("%w: length field %d below the minimum %d", ErrLength, length, minLen)
	}
	if length > len(b) {
		return p, fmt.Errorf("%w: length field %d exceeds the datagram of %d bytes", ErrLength, length, len(b))
	}
	p = Packet{
		Diag:                      Diag(b[0] & 0x1f),
		State:                     State(b[1] >> 6),
		Poll:                      b[1]&flagPoll != 0,
		Final:                     b[1]&flagFinal != 0,
		ControlPlaneIndependent:   b[1]&flagCPI != 0,
		Demand:                    b[1]&flagDemand != 0,
		DetectMult:                b[2],
		MyDiscriminator:           binary.BigEndian.Uint32(b[4:]),
		YourDiscriminator:         binary.BigEndian.Uint32(b[8:]),
		DesiredMinTxInterval:      usec(binary.BigEndian.Uint32(b[12:])),
		RequiredMinRxInterval:     usec(binary.BigEndian.Uint32(b[16:])),
		RequiredMinEchoRxInterval: usec(binary.BigEndian.Uint32(b[20:])),
	}
	switch {
	case p.DetectMult == 0:
		return Packet{}, ErrDetectMult
	case b[1]&flagMultipnt != 0:
		return Packet{}, ErrMultipoint
	case p.MyDiscriminator == 0:
		return Packet{}, ErrMyDiscr
	case p.YourDiscriminator == 0 && p.State != StateDown && p.State != StateAdminDown:
		return Packet{}, fmt.Errorf("%w (state %s)", ErrYourDiscr, p.State)
	}
	if auth {
		typ, authLen := AuthType(b[PacketLen]), int(b[PacketLen+1])
		if authLen < authHeaderLen || PacketLen+authLen > length {
			return Packet{}, fmt.Errorf("%w: %s section of length %d does not fit a packet of length %d: %w",
				ErrAuthentication, typ, authLen, length, ErrLength)
		}
		return Packet{}, fmt.Errorf("%w: packet uses %s authentication", ErrAuthentication, typ)
	}
	return p, nil
}

// Marshal encodes the packet, 24 bytes long. It refuses what a peer would
// discard (see Unmarshal) and a packet with both Poll and Final set
// (§6.8.7), and intervals that do not fit the 32-bit microsecond fields.
func (p Packet) Marshal() ([]byte, error) {
	switch {
	case p.Diag > 31:
		return nil, fmt.Errorf("%w: diag %d", ErrField, p.Diag)
	case p.State > StateUp:
		return nil, fmt.Errorf("%w: state %d", ErrField, p.State)
	case p.DetectMult == 0:
		return nil, ErrDetectMult
	case p.MyDiscriminator == 0:
		return nil, ErrMyDiscr
	case p.YourDiscriminator == 0 && p.State != StateDown && p.State != StateAdminDown:
		return nil, fmt.Errorf("%w (state %s)", ErrYourDiscr, p.State)
	case p.Poll && p.Final:
		return nil, ErrPollFinal
	}
	b := make([]byte, PacketLen)
	b[0] = Version<<5 | uint8(p.Diag)
	b[1] = uint8(p.State) << 6
	for _, f := range []struct {
		set  bool
		mask byte
	}{{p.Poll, flagPoll}, {p.Final, flagFinal}, {p.ControlPlaneIndependent, flagCPI}, {p.Demand, flagDemand}} {
		if f.set {
			b[1] |= f.mask
		}
	}
	b[2] = p.DetectMult
	b[3] = PacketLen
	binary.BigEndian.PutUint32(b[4:], p.MyDiscriminator)
	binary.BigEndian.PutUint32(b[8:], p.YourDiscriminator)
	for i, d := range []time.Duration{p.DesiredMinTxInterval, p.RequiredMinRxInterval, p.RequiredMinEchoRxInterval} {
		us, err := toUsec(d)
		if err != nil {
			return nil, err
		}
		binary.BigEndian.PutUint32(b[12+4*i:], us)
	}
	return b, nil
}

func usec(v uint32) time.Duration { return time.Duration(v) * time.Microsecond }

func toUsec(d time.Duration) (uint32, error) {
	us := d / time.Microsecond
	if d < 0 || us > 1<<32-1 || us*time.Microsecond != d {
		return 0, fmt.Errorf("%w: interval %v is not a whole number of microseconds below 2^32", ErrField, d)
	}
	return uint32(us), nil
}
