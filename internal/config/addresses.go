package config

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"unicode/utf8"

	"go4.org/netipx"
)

// MaxAddressRangeLen is the longest address range, in characters, that the
// API server admits (the MaxLength of AddressRange). It matters only for
// ranges padded with many spaces, but agreeing with the API server means
// agreeing on those too.
const MaxAddressRangeLen = 83

// Shown in errors so a user sees the accepted form without reading docs.
const cidrExample = "a CIDR (like 198.51.100.0/24 or 2001:db8::/120)"

// ParseAddressRange parses one block of a pool: a CIDR such as
// "198.51.100.0/25" or "2001:db8::/120", or an inclusive range FIRST-LAST of
// one family such as "198.51.100.10 - 198.51.100.20".
//
// A CIDR with host bits set ("198.51.100.7/24") is accepted and masked, as
// MetalLB does. Whitespace is allowed around each address of a range, but
// not anywhere in a CIDR, because that is what the API server's rules trim.
// Zones and IPv4-mapped IPv6 addresses are refused: neither can be assigned
// to a Service.
func ParseAddressRange(s string) (netipx.IPRange, error) {
	if s == "" {
		return netipx.IPRange{}, fmt.Errorf("address range is empty; want %s or a range FIRST-LAST", cidrExample)
	}
	if n := utf8.RuneCountInString(s); n > MaxAddressRangeLen {
		return netipx.IPRange{}, fmt.Errorf("address range %q is %d characters long; the limit is %d", s, n, MaxAddressRangeLen)
	}
	if strings.Contains(s, "-") {
		return parseFirstLast(s)
	}
	return parseCIDR(s)
}

func parseCIDR(s string) (netipx.IPRange, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		// A lone address is the most common mistake; say how to fix it.
		if ip, ipErr := netip.ParseAddr(s); ipErr == nil && ip.Zone() == "" && !ip.Is4In6() {
			return netipx.IPRange{}, fmt.Errorf("%q is neither %s nor a range FIRST-LAST; for this one address write %s/%d", s, cidrExample, s, ip.BitLen())
		}
		return netipx.IPRange{}, fmt.Errorf("%q is neither %s nor a range FIRST-LAST: %w", s, cidrExample, err)
	}
	if p.Addr().Is4In6() {
		return netipx.IPRange{}, fmt.Errorf("CIDR %q is an IPv4-mapped IPv6 prefix; write IPv4 addresses in IPv4 form", s)
	}
	return netipx.RangeOfPrefix(p.Masked()), nil
}

func parseFirstLast(s string) (netipx.IPRange, error) {
	ends := strings.Split(s, "-")
	if len(ends) != 2 {
		return netipx.IPRange{}, fmt.Errorf("range %q has %d dashes; it must be two IP addresses joined by one dash, like 198.51.100.10-198.51.100.20", s, len(ends)-1)
	}
	first, err := parseRangeEnd(s, "first", ends[0])
	if err != nil {
		return netipx.IPRange{}, err
	}
	last, err := parseRangeEnd(s, "last", ends[1])
	if err != nil {
		return netipx.IPRange{}, err
	}
	if first.BitLen() != last.BitLen() {
		return netipx.IPRange{}, fmt.Errorf("range %q mixes IPv4 and IPv6; use one range per family", s)
	}
	if last.Less(first) {
		return netipx.IPRange{}, fmt.Errorf("range %q starts after it ends; write the lower address first", s)
	}
	return netipx.IPRangeFrom(first, last), nil
}

// parseRangeEnd parses one side of FIRST-LAST. which names the side and
// whole is the full range, both only for the error message.
func parseRangeEnd(whole, which, end string) (netip.Addr, error) {
	// strings.TrimSpace is what CEL's trim() runs, so both trim the same
	// (Unicode) spaces.
	end = strings.TrimSpace(end)
	if end == "" {
		return netip.Addr{}, fmt.Errorf("range %q has no %s address; it must be two IP addresses joined by one dash, like 198.51.100.10-198.51.100.20", whole, which)
	}
	ip, err := netip.ParseAddr(end)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("range %q: %s address %q is not an IP address: %w", whole, which, end, err)
	}
	if ip.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("range %q: %s address %q has an IPv6 zone; zones are not allowed", whole, which, end)
	}
	if ip.Is4In6() {
		return netip.Addr{}, fmt.Errorf("range %q: %s address %q is an IPv4-mapped IPv6 address; write it as %s", whole, which, end, ip.Unmap())
	}
	return ip, nil
}

// ParseAddressRanges parses a pool's list of addresses. It returns the
// ranges in input order, and their union as a set. An entry that does not
// parse is reported by its index; entries that overlap are an error, as
// they almost always mean a typo and would make address counts lie.
func ParseAddressRanges(ss []string) (*netipx.IPSet, []netipx.IPRange, error) {
	if len(ss) == 0 {
		return nil, nil, fmt.Errorf("addresses is empty; a pool needs at least one CIDR or range")
	}
	ranges := make([]netipx.IPRange, len(ss))
	for i, s := range ss {
		r, err := ParseAddressRange(s)
		if err != nil {
			return nil, nil, fmt.Errorf("addresses[%d]: %w", i, err)
		}
		ranges[i] = r
	}
	if i, j, ok := firstOverlap(ranges); ok {
		return nil, nil, fmt.Errorf("addresses[%d] %q overlaps addresses[%d] %q", j, ss[j], i, ss[i])
	}
	var b netipx.IPSetBuilder
	for _, r := range ranges {
		b.AddRange(r)
	}
	set, err := b.IPSet()
	if err != nil {
		return nil, nil, fmt.Errorf("building the set of addresses: %w", err)
	}
	return set, ranges, nil
}

// firstOverlap reports two overlapping ranges by index, i < j. It sorts
// instead of comparing every pair so that no list, however long, is slow.
func firstOverlap(ranges []netipx.IPRange) (i, j int, ok bool) {
	if len(ranges) < 2 {
		return 0, 0, false
	}
	order := make([]int, len(ranges))
	for k := range order {
		order[k] = k
	}
	// Addr.Compare puts IPv4 before IPv6, so each family is contiguous.
	slices.SortFunc(order, func(a, b int) int {
		return cmp.Or(ranges[a].From().Compare(ranges[b].From()), cmp.Compare(a, b))
	})
	// Of the ranges seen so far, the one reaching furthest overlaps the
	// next whenever any of them does.
	furthest := order[0]
	for _, k := range order[1:] {
		if ranges[furthest].Overlaps(ranges[k]) {
			return min(furthest, k), max(furthest, k), true
		}
		if ranges[furthest].To().Less(ranges[k].To()) {
			furthest = k
		}
	}
	return 0, 0, false
}
