package main

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestFileIsCurrent fails when ipaddresspool_types.go holds rules other
// than those celgen writes (edited by hand, or celgen changed without
// `go generate ./api/...`).
func TestFileIsCurrent(t *testing.T) {
	src, err := os.ReadFile("../../ipaddresspool_types.go")
	if err != nil {
		t.Fatal(err)
	}
	out, err := rewrite(src)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(out), string(src)); diff != "" {
		t.Errorf("the AddressRange rules are stale; run go generate ./api/... (-want +got):\n%s", diff)
	}
}

func TestRewriteReplacesStaleMarkers(t *testing.T) {
	src := strings.Join([]string{
		"// AddressRange is a block.",
		"//",
		"// +kubebuilder:validation:MaxLength=83",
		markerPrefix + `rule="self.size() > 0",messageExpression="'old'"`,
		typeLine,
		"",
	}, "\n")
	out, err := rewrite([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	want = append(want, "// AddressRange is a block.", "//", "// +kubebuilder:validation:MaxLength=83")
	for _, r := range rules() {
		want = append(want, r.marker())
	}
	want = append(want, typeLine, "")
	if diff := cmp.Diff(strings.Join(want, "\n"), string(out)); diff != "" {
		t.Errorf("rewrite (-want +got):\n%s", diff)
	}
}

func TestRewriteErrors(t *testing.T) {
	for name, src := range map[string]string{
		"no type":    "package v1beta1\n",
		"no markers": "// AddressRange is a block.\n" + typeLine + "\n",
	} {
		if _, err := rewrite([]byte(src)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
