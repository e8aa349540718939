package config

import (
	"bufio"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"go4.org/netipx"
)

type addressRangeCase struct {
	line  int
	valid bool
	input string
	want  string // FROM-TO if valid, else a substring of the error
}

// readAddressRangeCases reads testdata/address_ranges.txt; its header
// describes the format.
func readAddressRangeCases(tb testing.TB) []addressRangeCase {
	tb.Helper()
	f, err := os.Open("testdata/address_ranges.txt")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var cases []addressRangeCase
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Split(text, "\t")
		if len(fields) != 3 || (fields[0] != "valid" && fields[0] != "invalid") {
			tb.Fatalf("address_ranges.txt:%d: want valid|invalid<TAB>input<TAB>expected, got %q", line, text)
		}
		input := fields[1]
		if strings.HasPrefix(input, `"`) {
			if input, err = strconv.Unquote(input); err != nil {
				tb.Fatalf("address_ranges.txt:%d: input: %v", line, err)
			}
		}
		cases = append(cases, addressRangeCase{line: line, valid: fields[0] == "valid", input: input, want: fields[2]})
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return cases
}

func TestParseAddressRange(t *testing.T) {
	for _, c := range readAddressRangeCases(t) {
		r, err := ParseAddressRange(c.input)
		switch {
		case c.valid && err != nil:
			t.Errorf("address_ranges.txt:%d: ParseAddressRange(%q): %v", c.line, c.input, err)
		case c.valid && r.String() != c.want:
			t.Errorf("address_ranges.txt:%d: ParseAddressRange(%q) = %v, want %v", c.line, c.input, r, c.want)
		case !c.valid && err == nil:
			t.Errorf("address_ranges.txt:%d: ParseAddressRange(%q) = %v, want an error containing %q", c.line, c.input, r, c.want)
		case !c.valid && !strings.Contains(err.Error(), c.want):
			t.Errorf("address_ranges.txt:%d: ParseAddressRange(%q) error %q does not contain %q", c.line, c.input, err, c.want)
		}
		// The table doubles as a check of the CEL model the fuzzer uses.
		if got := celAcceptsAddressRange(c.input); got != c.valid {
			t.Errorf("address_ranges.txt:%d: the CEL model says valid=%v for %q", c.line, got, c.input)
		}
	}
}

func TestParseAddressRangeLength(t *testing.T) {
	const r = "198.51.100.1-198.51.100.2"
	pad := func(n int, space string) string {
		return r + strings.Repeat(space, n-utf8.RuneCountInString(r))
	}
	tests := []struct {
		in    string
		valid bool
	}{
		{pad(MaxAddressRangeLen, " "), true},
		{pad(MaxAddressRangeLen+1, " "), false},
		// The limit counts characters, as the API server does, not bytes.
		{pad(MaxAddressRangeLen, "\u3000"), true},
		{pad(MaxAddressRangeLen+1, "\u3000"), false},
	}
	for _, tt := range tests {
		_, err := ParseAddressRange(tt.in)
		if (err == nil) != tt.valid {
			t.Errorf("ParseAddressRange(%d characters): error %v, want valid=%v", utf8.RuneCountInString(tt.in), err, tt.valid)
		}
		if got := celAcceptsAddressRange(tt.in); got != tt.valid {
			t.Errorf("CEL model says valid=%v for %d characters", got, utf8.RuneCountInString(tt.in))
		}
	}
}

func TestParseAddressRanges(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    []string // the ranges, in input order
		wantErr string
	}{
		{
			name: "mixed families",
			in:   []string{"198.51.100.0/25", "2001:db8::/120", "198.51.100.200 - 198.51.100.210"},
			want: []string{"198.51.100.0-198.51.100.127", "2001:db8::-2001:db8::ff", "198.51.100.200-198.51.100.210"},
		},
		{
			name: "adjacent blocks do not overlap",
			in:   []string{"198.51.100.128/25", "198.51.100.0/25", "198.51.101.0-198.51.101.0"},
			want: []string{"198.51.100.128-198.51.100.255", "198.51.100.0-198.51.100.127", "198.51.101.0-198.51.101.0"},
		},
		{
			name: "same numbers in both families do not overlap",
			in:   []string{"0.0.0.0/0", "::/0"},
			want: []string{"0.0.0.0-255.255.255.255", "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
		},
		{
			name:    "empty",
			in:      nil,
			wantErr: "addresses is empty",
		},
		{
			name:    "bad entry",
			in:      []string{"198.51.100.0/25", "2001:db8::/120", "198.51.100.20-198.51.100.10"},
			wantErr: `addresses[2]: range "198.51.100.20-198.51.100.10" starts after it ends`,
		},
		{
			name:    "duplicate",
			in:      []string{"198.51.100.0/24", "198.51.100.0/24"},
			wantErr: `addresses[1] "198.51.100.0/24" overlaps addresses[0] "198.51.100.0/24"`,
		},
		{
			name:    "range inside an earlier CIDR",
			in:      []string{"198.51.100.0/24", "2001:db8::/64", "198.51.100.5-198.51.100.9"},
			wantErr: `addresses[2] "198.51.100.5-198.51.100.9" overlaps addresses[0] "198.51.100.0/24"`,
		},
		{
			name:    "CIDR around a later range",
			in:      []string{"198.51.100.5-198.51.100.9", "198.51.100.0/24"},
			wantErr: `addresses[1] "198.51.100.0/24" overlaps addresses[0] "198.51.100.5-198.51.100.9"`,
		},
		{
			name:    "overlap by one address, after a wide block",
			in:      []string{"198.51.100.0-198.51.100.100", "198.51.100.105/32", "2001:db8::/64", "198.51.100.101 - 198.51.100.105"},
			wantErr: `addresses[3] "198.51.100.101 - 198.51.100.105" overlaps addresses[1] "198.51.100.105/32"`,
		},
		{
			name:    "same address written two ways",
			in:      []string{"198.51.100.1/32", "198.51.100.1 - 198.51.100.1"},
			wantErr: `addresses[1] "198.51.100.1 - 198.51.100.1" overlaps addresses[0] "198.51.100.1/32"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, ranges, err := ParseAddressRanges(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseAddressRanges(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAddressRanges(%q): %v", tt.in, err)
			}
			var got []string
			var b netipx.IPSetBuilder
			for _, r := range ranges {
				got = append(got, r.String())
				b.AddRange(r)
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("ranges = %v, want %v", got, tt.want)
			}
			want, _ := b.IPSet()
			if !set.Equal(want) {
				t.Errorf("set = %v, want %v", set.Ranges(), want.Ranges())
			}
		})
	}
}

// TestParseAddressRangesOverlapAnyOrder checks the sort-based overlap
// search against comparing every pair, for every order of a few ranges.
func TestParseAddressRangesOverlapAnyOrder(t *testing.T) {
	pool := []string{"198.51.100.0/30", "198.51.100.3-198.51.100.8", "198.51.100.10-198.51.100.12", "2001:db8::/127", "198.51.100.9/32", "2001:db8::1-2001:db8::2"}
	for mask := 1; mask < 1<<len(pool); mask++ {
		var in []string
		for i, s := range pool {
			if mask&(1<<i) != 0 {
				in = append(in, s)
			}
		}
		wantOverlap := false
		for j := range in {
			for i := range j {
				a, _ := ParseAddressRange(in[i])
				b, _ := ParseAddressRange(in[j])
				wantOverlap = wantOverlap || a.Overlaps(b)
			}
		}
		_, _, err := ParseAddressRanges(in)
		if gotOverlap := err != nil; gotOverlap != wantOverlap {
			t.Errorf("ParseAddressRanges(%q) error = %v, want overlap=%v", in, err, wantOverlap)
		}
	}
}

func FuzzParseAddressRange(f *testing.F) {
	for _, c := range readAddressRangeCases(f) {
		f.Add(c.input)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseAddressRange(s)
		if cel := celAcceptsAddressRange(s); cel != (err == nil) {
			t.Fatalf("ParseAddressRange(%q) error = %v, but the API server's rules say valid=%v", s, err, cel)
		}
		if p, perr := netip.ParsePrefix(s); perr == nil && !p.Addr().Is4In6() {
			if err != nil {
				t.Fatalf("ParseAddressRange(%q) refused a valid CIDR: %v", s, err)
			}
			if want := netipx.RangeOfPrefix(p.Masked()); r != want {
				t.Fatalf("ParseAddressRange(%q) = %v, want %v", s, r, want)
			}
		}
		if err != nil {
			return
		}
		from, to := r.From(), r.To()
		if !r.IsValid() || to.Less(from) || from.BitLen() != to.BitLen() {
			t.Fatalf("ParseAddressRange(%q) = %v, not a valid range", s, r)
		}
		if from.Zone() != "" || to.Zone() != "" || from.Is4In6() || to.Is4In6() {
			t.Fatalf("ParseAddressRange(%q) = %v, has a zone or an IPv4-mapped address", s, r)
		}
		again, err := ParseAddressRange(r.String())
		if err != nil || again != r {
			t.Fatalf("ParseAddressRange(%q) = %v, which parses back as %v, %v", s, r, again, err)
		}
	})
}

// celAcceptsAddressRange is a literal model of the API server's validation
// of an AddressRange (api/v1beta1): the schema's length limits and its CEL
// rules, with isIP, isCIDR, cidr() and containsIP as Kubernetes implements
// them. It deliberately shares no code with the parser, and decides order
// the way the CEL rule does, by prefixes, not by comparing addresses.
func celAcceptsAddressRange(s string) bool {
	if n := utf8.RuneCountInString(s); n < 1 || n > MaxAddressRangeLen {
		return false
	}
	if !strings.Contains(s, "-") {
		_, ok := celCIDR(s)
		return ok
	}
	parts := strings.Split(s, "-")
	if len(parts) != 2 {
		return false
	}
	first, last := strings.TrimSpace(parts[0]), strings.TrimSpace(parts[1])
	a, okA := celIP(first)
	b, okB := celIP(last)
	if !okA || !okB || a.BitLen() != b.BitLen() {
		return false
	}
	if a == b {
		return true
	}
	bits := a.BitLen()
	for p := 0; p < 128; p++ {
		if p >= bits {
			continue
		}
		at, _ := celCIDR(first + "/" + strconv.Itoa(p))
		below, _ := celCIDR(first + "/" + strconv.Itoa(p+1))
		half, _ := celCIDR(at.Masked().Addr().String() + "/" + strconv.Itoa(p+1))
		if at.Contains(b) && !below.Contains(b) && half.Contains(a) {
			return true
		}
	}
	return false
}

// celIP is Kubernetes' CEL isIP/ip().
func celIP(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	return a, err == nil && a.Zone() == "" && !a.Is4In6()
}

// celCIDR is Kubernetes' CEL isCIDR/cidr().
func celCIDR(s string) (netip.Prefix, bool) {
	p, err := netip.ParsePrefix(s)
	return p, err == nil && !p.Addr().Is4In6()
}
