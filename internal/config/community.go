package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Community is a BGP community: standard (RFC 1997), two 16-bit numbers
// written "65000:100", or large (RFC 8092), three 32-bit numbers written
// "large:65000:1:2". The zero value is the standard community 0:0.
//
// Communities are comparable, so == and map keys work: the constructors
// keep unused parts zero.
type Community struct {
	large bool
	// For a standard community parts[0] is the ASN, parts[1] the value and
	// parts[2] is zero.
	parts [3]uint32
}

// StandardCommunity returns the standard community asn:value.
func StandardCommunity(asn, value uint16) Community {
	return Community{parts: [3]uint32{uint32(asn), uint32(value), 0}}
}

// LargeCommunity returns the large community large:global:local1:local2.
func LargeCommunity(global, local1, local2 uint32) Community {
	return Community{large: true, parts: [3]uint32{global, local1, local2}}
}

// IsLarge reports whether c is a large community.
func (c Community) IsLarge() bool { return c.large }

// Standard returns the ASN and value of a standard community; ok is false
// if c is large.
func (c Community) Standard() (asn, value uint16, ok bool) {
	if c.large {
		return 0, 0, false
	}
	return uint16(c.parts[0]), uint16(c.parts[1]), true
}

// Large returns the three parts of a large community; ok is false if c is
// standard.
func (c Community) Large() (global, local1, local2 uint32, ok bool) {
	if !c.large {
		return 0, 0, 0, false
	}
	return c.parts[0], c.parts[1], c.parts[2], true
}

// String returns c in the form ParseCommunity reads, without leading zeros.
func (c Community) String() string {
	if c.large {
		return "large:" + strconv.FormatUint(uint64(c.parts[0]), 10) + ":" +
			strconv.FormatUint(uint64(c.parts[1]), 10) + ":" +
			strconv.FormatUint(uint64(c.parts[2]), 10)
	}
	return strconv.FormatUint(uint64(c.parts[0]), 10) + ":" +
		strconv.FormatUint(uint64(c.parts[1]), 10)
}

const largePrefix = "large:"

// ParseCommunity parses "ASN:VALUE" (two numbers from 0 to 65535) or
// "large:ASN:V1:V2" (three numbers from 0 to 4294967295).
//
// It accepts exactly what the API server's rules accept: ASCII digits only,
// 1 to 5 of them per standard part and 1 to 10 per large part. Leading
// zeros are therefore fine ("065000:100") as long as the digit count is.
func ParseCommunity(s string) (Community, error) {
	if s == "" {
		return Community{}, fmt.Errorf("community is empty; want ASN:VALUE (65000:100) or large:ASN:V1:V2")
	}
	if rest, ok := strings.CutPrefix(s, largePrefix); ok {
		fields := strings.Split(rest, ":")
		if len(fields) != 3 {
			return Community{}, fmt.Errorf("large community %q must be large:ASN:V1:V2 with three numbers from 0 to 4294967295", s)
		}
		var parts [3]uint32
		for i, name := range []string{"ASN", "V1", "V2"} {
			n, err := parseCommunityPart(fields[i], 10, math.MaxUint32)
			if err != nil {
				return Community{}, fmt.Errorf("large community %q: %s %w", s, name, err)
			}
			parts[i] = uint32(n)
		}
		return LargeCommunity(parts[0], parts[1], parts[2]), nil
	}
	fields := strings.Split(s, ":")
	if len(fields) != 2 {
		return Community{}, fmt.Errorf("community %q must be ASN:VALUE with two numbers from 0 to 65535 (65000:100), or large:ASN:V1:V2", s)
	}
	asn, err := parseCommunityPart(fields[0], 5, math.MaxUint16)
	if err != nil {
		return Community{}, fmt.Errorf("community %q: ASN %w", s, err)
	}
	value, err := parseCommunityPart(fields[1], 5, math.MaxUint16)
	if err != nil {
		return Community{}, fmt.Errorf("community %q: value %w", s, err)
	}
	return StandardCommunity(uint16(asn), uint16(value)), nil
}

// parseCommunityPart parses one number of a community. Its error reads
// after the part's name.
func parseCommunityPart(s string, maxDigits int, maxValue uint64) (uint64, error) {
	if n, ok := communityPart(s, maxDigits, maxValue); ok {
		return n, nil
	}
	return 0, fmt.Errorf("%q must be 1 to %d decimal digits with a value from 0 to %d", s, maxDigits, maxValue)
}

// communityPart mirrors the API server's rule: its regexp limits the digit
// count (so "0000065000" is refused though it is 65000), then int() checks
// the value.
func communityPart(s string, maxDigits int, maxValue uint64) (uint64, bool) {
	if len(s) == 0 || len(s) > maxDigits {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	// At most 10 digits, so this cannot overflow a uint64.
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > maxValue {
		return 0, false
	}
	return n, true
}

// MaxCommunityNameLen is the longest name of a community alias the API
// server admits.
const MaxCommunityNameLen = 253

// IsCommunityName reports whether s can name a community alias defined in a
// Community object: 1 to 253 letters, digits, '-', '_' and '.', starting and
// ending with a letter or digit. Such a name never contains ':', so it can
// never be mistaken for a community written out.
func IsCommunityName(s string) bool {
	if len(s) == 0 || len(s) > MaxCommunityNameLen {
		return false
	}
	if !isASCIIAlnum(s[0]) || !isASCIIAlnum(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if c := s[i]; !isASCIIAlnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

func isASCIIAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}
