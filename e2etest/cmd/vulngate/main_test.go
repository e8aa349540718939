package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A govulncheck stream: one vulnerability called (symbol level), one only
// imported (package level), one only required (module level).
const scan = `{"config":{"scanner_name":"govulncheck"}}
{"osv":{"id":"GO-1"}}
{"finding":{"osv":"GO-1","fixed_version":"v1.2.0","trace":[{"module":"example.com/a","version":"v1.0.0"}]}}
{"finding":{"osv":"GO-1","fixed_version":"v1.2.0","trace":[{"module":"example.com/a","version":"v1.0.0","package":"example.com/a/p"}]}}
{"finding":{"osv":"GO-1","fixed_version":"v1.2.0","trace":[{"module":"example.com/a","version":"v1.0.0","package":"example.com/a/p","function":"Parse","receiver":"*Msg"},{"module":"example.com/me","package":"example.com/me","function":"main"}]}}
{"finding":{"osv":"GO-2","trace":[{"module":"example.com/b","version":"v2.0.0","package":"example.com/b"}]}}
{"finding":{"osv":"GO-3","trace":[{"module":"example.com/c","version":"v0.1.0"}]}}
`

func TestGate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		accepted string
		want     []string
		wantOK   bool
	}{
		{
			name: "a called vulnerability fails",
			want: []string{
				"VULNERABLE: GO-1 in example.com/a@v1.0.0 (fixed in: v1.2.0), called: example.com/a/p.Msg.Parse; see https://pkg.go.dev/vuln/GO-1",
			},
		},
		{
			name:     "accepted with a reason passes",
			accepted: "# why\nGO-1 no fixed version we can take\n",
			want: []string{
				"called but GO-1 (accepted: no fixed version we can take)",
				"no vulnerable code called beyond the accepted list",
			},
			wantOK: true,
		},
		{
			name:     "an accepted one no longer called fails",
			accepted: "GO-1 reason\nGO-2 only imported, never called\n",
			want: []string{
				"called but GO-1 (accepted: reason)",
				"STALE: GO-2 is accepted but no longer reported; remove it from the accepted list",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			accepted, err := parseAccepted(tc.accepted)
			if err != nil {
				t.Fatal(err)
			}
			called, err := calledVulns(strings.NewReader(scan))
			if err != nil {
				t.Fatal(err)
			}
			v := judge(called, accepted)
			if diff := cmp.Diff(tc.want, v.report()); diff != "" {
				t.Errorf("report (-want +got):\n%s", diff)
			}
			if v.ok() != tc.wantOK {
				t.Errorf("ok = %v, want %v", v.ok(), tc.wantOK)
			}
		})
	}
}

func TestParseAccepted(t *testing.T) {
	for _, tc := range []struct{ name, in, wantErr string }{
		{"no reason", "GO-1\n", "line 1: GO-1 has no reason"},
		{"twice", "GO-1 a\nGO-1 b\n", "line 2: GO-1 is listed twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseAccepted(tc.in)
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestMalformedStream(t *testing.T) {
	if _, err := calledVulns(strings.NewReader(`{"finding":`)); err == nil {
		t.Error("a cut stream was read without an error")
	}
}
