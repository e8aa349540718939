package config

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestParseCommunity(t *testing.T) {
	tests := []struct {
		in      string
		want    string // canonical text if valid
		large   bool
		wantErr string
	}{
		{in: "65000:100", want: "65000:100"},
		{in: "0:0", want: "0:0"},
		{in: "65535:65535", want: "65535:65535"},
		{in: "065000:100", wantErr: `ASN "065000" must be 1 to 5 decimal digits`}, // six digits, though the value fits
		{in: "06500:00100", want: "6500:100"},
		{in: "00000:00000", want: "0:0"},
		{in: "large:65000:1:2", want: "large:65000:1:2", large: true},
		{in: "large:0:0:0", want: "large:0:0:0", large: true},
		{in: "large:4294967295:4294967295:4294967295", want: "large:4294967295:4294967295:4294967295", large: true},
		{in: "large:0000000001:02:3", want: "large:1:2:3", large: true},

		{in: "", wantErr: "community is empty"},
		{in: "65536:1", wantErr: `community "65536:1": ASN "65536" must be 1 to 5 decimal digits with a value from 0 to 65535`},
		{in: "1:65536", wantErr: `community "1:65536": value "65536"`},
		{in: "99999:1", wantErr: `ASN "99999"`},
		{in: "000001:1", wantErr: `ASN "000001"`},
		{in: "65000", wantErr: `community "65000" must be ASN:VALUE`},
		{in: "65000:100:1", wantErr: "must be ASN:VALUE"},
		{in: ":100", wantErr: `ASN ""`},
		{in: "65000:", wantErr: `value ""`},
		{in: ":", wantErr: `ASN ""`},
		{in: "+1:1", wantErr: `ASN "+1"`},
		{in: "-1:1", wantErr: `ASN "-1"`},
		{in: "1:+1", wantErr: `value "+1"`},
		{in: " 1:1", wantErr: `ASN " 1"`},
		{in: "1:1 ", wantErr: `value "1 "`},
		{in: "1:1\n", wantErr: `value "1\n"`},
		{in: "0x10:1", wantErr: `ASN "0x10"`},
		{in: "1_0:1", wantErr: `ASN "1_0"`},
		{in: "١:1", wantErr: `ASN "١"`}, // Arabic-Indic digit one
		{in: "large:4294967296:1:1", wantErr: `large community "large:4294967296:1:1": ASN "4294967296" must be 1 to 10 decimal digits with a value from 0 to 4294967295`},
		{in: "large:1:4294967296:1", wantErr: `V1 "4294967296"`},
		{in: "large:1:1:9999999999", wantErr: `V2 "9999999999"`},
		{in: "large:00000000001:1:1", wantErr: `ASN "00000000001"`},
		{in: "large:1:2", wantErr: `large community "large:1:2" must be large:ASN:V1:V2`},
		{in: "large:1:2:3:4", wantErr: "must be large:ASN:V1:V2"},
		{in: "large:", wantErr: "must be large:ASN:V1:V2"},
		{in: "large:1::3", wantErr: `V1 ""`},
		{in: "large:-1:2:3", wantErr: `ASN "-1"`},
		{in: "Large:1:2:3", wantErr: "must be ASN:VALUE"},
		{in: "large :1:2:3", wantErr: "must be ASN:VALUE"},
		{in: "no-export", wantErr: "must be ASN:VALUE"},
	}
	for _, tt := range tests {
		c, err := ParseCommunity(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseCommunity(%q) = %v, %v; want an error containing %q", tt.in, c, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseCommunity(%q): %v", tt.in, err)
			continue
		}
		if c.String() != tt.want || c.IsLarge() != tt.large {
			t.Errorf("ParseCommunity(%q) = %v (large=%v), want %v (large=%v)", tt.in, c, c.IsLarge(), tt.want, tt.large)
		}
	}
}

func TestCommunityParts(t *testing.T) {
	std := StandardCommunity(65000, 100)
	if asn, v, ok := std.Standard(); asn != 65000 || v != 100 || !ok {
		t.Errorf("%v.Standard() = %d, %d, %v", std, asn, v, ok)
	}
	if _, _, _, ok := std.Large(); ok {
		t.Errorf("%v.Large() ok for a standard community", std)
	}
	large := LargeCommunity(4200000000, 1, 2)
	if g, l1, l2, ok := large.Large(); g != 4200000000 || l1 != 1 || l2 != 2 || !ok {
		t.Errorf("%v.Large() = %d, %d, %d, %v", large, g, l1, l2, ok)
	}
	if _, _, ok := large.Standard(); ok {
		t.Errorf("%v.Standard() ok for a large community", large)
	}
	// Communities are map keys, so equal values must compare equal.
	if parsed, _ := ParseCommunity("65000:00100"); parsed != std {
		t.Errorf("ParseCommunity(65000:00100) = %#v, want %#v", parsed, std)
	}
	if (Community{}) != StandardCommunity(0, 0) {
		t.Errorf("zero Community is not 0:0")
	}
	if LargeCommunity(0, 0, 0) == StandardCommunity(0, 0) {
		t.Errorf("large:0:0:0 == 0:0")
	}
}

func TestIsCommunityName(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"a", true},
		{"0", true},
		{"no-export", true},
		{"My_Community.v2", true},
		{"a-_.z", true},
		{strings.Repeat("a", 253), true},
		{strings.Repeat("a", 254), false},
		{"", false},
		{"-a", false},
		{"a-", false},
		{"_a", false},
		{"a.", false},
		{".", false},
		{"65000:100", false},
		{"large:1:2:3", false},
		{"a:b", false},
		{"a b", false},
		{"a/b", false},
		{"a\n", false},
		{"é", false},
	}
	for _, tt := range tests {
		if got := IsCommunityName(tt.in); got != tt.want {
			t.Errorf("IsCommunityName(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func FuzzParseCommunity(f *testing.F) {
	for _, s := range []string{"65000:100", "065000:100", "65536:1", "large:65000:1:2", "large:4294967296:1:1", "large:0000000001:2:3", "no-export", "", ":", "large:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCommunity(s)
		if ref := refIsCommunity(s); ref != (err == nil) {
			t.Fatalf("ParseCommunity(%q) error = %v, but the API server's rules say valid=%v", s, err, ref)
		}
		if name, ref := IsCommunityName(s), refIsCommunityName(s); name != ref {
			t.Fatalf("IsCommunityName(%q) = %v, but the API server's rules say %v", s, name, ref)
		}
		if err == nil && IsCommunityName(s) {
			t.Fatalf("%q is both a community and a community name", s)
		}
		if err != nil {
			return
		}
		text := c.String()
		again, err := ParseCommunity(text)
		if err != nil || again != c || again.String() != text {
			t.Fatalf("ParseCommunity(%q) = %v, which parses back as %v, %v", s, c, again, err)
		}
		if c.IsLarge() != strings.HasPrefix(s, "large:") {
			t.Fatalf("ParseCommunity(%q).IsLarge() = %v", s, c.IsLarge())
		}
	})
}

var (
	refStandard = regexp.MustCompile(`^[0-9]{1,5}:[0-9]{1,5}$`)
	refLarge    = regexp.MustCompile(`^large:[0-9]{1,10}:[0-9]{1,10}:[0-9]{1,10}$`)
	refName     = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
)

// refIsCommunity is a literal model of the API server's CommunityValue
// rules (api/v1beta1), sharing no code with ParseCommunity.
func refIsCommunity(s string) bool {
	fitsIn := func(parts []string, max uint64) bool {
		for _, p := range parts {
			if n, err := strconv.ParseUint(p, 10, 64); err != nil || n > max {
				return false
			}
		}
		return true
	}
	if strings.HasPrefix(s, "large:") {
		return refLarge.MatchString(s) && fitsIn(strings.Split(s, ":")[1:], 4294967295)
	}
	return refStandard.MatchString(s) && fitsIn(strings.Split(s, ":"), 65535)
}

// refIsCommunityName models the rules on CommunityAlias.Name.
func refIsCommunityName(s string) bool {
	return len(s) >= 1 && len(s) <= 253 && refName.MatchString(s)
}
