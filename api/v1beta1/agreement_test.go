package v1beta1_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
	"github.com/barelb/barelb/internal/testenv"
)

// corpusStrings reads the string inputs of a Go fuzz corpus folder.
func corpusStrings(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fuzz corpus in %s: %v", dir, err)
	}
	var out []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if lit, ok := strings.CutPrefix(line, "string("); ok {
				s, err := strconv.Unquote(strings.TrimSuffix(lit, ")"))
				if err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				out = append(out, s)
			}
		}
	}
	return out
}

// addressTableInputs reads the inputs of internal/config's address table.
func addressTableInputs(t *testing.T, root string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "internal", "config", "testdata", "address_ranges.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Split(line, "\t")
		if len(fields) < 2 {
			t.Fatalf("malformed line %q", line)
		}
		in := fields[1]
		if strings.HasPrefix(in, `"`) {
			if in, err = strconv.Unquote(in); err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
		}
		out = append(out, in)
	}
	return out
}

// testParsersAgree sends each input to the API server and to the Go parser
// the controller uses: both must accept it or both reject it.
func testParsersAgree(ctx context.Context, t *testing.T, env *testenv.Env) {
	root := env.RepoRoot
	fuzz := filepath.Join(root, "internal", "config", "testdata", "fuzz")

	t.Run("address ranges", func(t *testing.T) {
		inputs := append(addressTableInputs(t, root), corpusStrings(t, filepath.Join(fuzz, "FuzzParseAddressRange"))...)
		for i, in := range inputs {
			pool := &barelbv1beta1.IPAddressPool{}
			pool.Name, pool.Namespace = fmt.Sprintf("agree-%d", i), namespace
			pool.Spec.Addresses = []barelbv1beta1.AddressRange{barelbv1beta1.AddressRange(in)}
			apiErr := env.Client.Create(ctx, pool, client.DryRunAll)
			_, goErr := config.ParseAddressRange(in)
			if (apiErr == nil) != (goErr == nil) {
				t.Errorf("%q: API server error %v, Go parser error %v", in, apiErr, goErr)
			}
		}
	})

	t.Run("communities", func(t *testing.T) {
		inputs := append(corpusStrings(t, filepath.Join(fuzz, "FuzzParseCommunity")),
			"65000:100", "0:0", "65535:65535", "65536:1", "large:1:2:3", "large:4294967295:0:0", "large:4294967296:0:0",
			"large:1:2", "no-export", "my.name_1", "-bad", "a b", "1:2:3", "LARGE:1:2:3", ":", "large:::")
		for i, in := range inputs {
			c := &barelbv1beta1.Community{}
			c.Name, c.Namespace = fmt.Sprintf("agree-%d", i), namespace
			c.Spec.Communities = []barelbv1beta1.CommunityAlias{{Name: "x", Value: barelbv1beta1.CommunityValue(in)}}
			apiErr := env.Client.Create(ctx, c, client.DryRunAll)
			_, goErr := config.ParseCommunity(in)
			if (apiErr == nil) != (goErr == nil) {
				t.Errorf("community value %q: API server error %v, Go parser error %v", in, apiErr, goErr)
			}

			adv := &barelbv1beta1.BGPAdvertisement{}
			adv.Name, adv.Namespace = fmt.Sprintf("agree-%d", i), namespace
			adv.Spec.Communities = []barelbv1beta1.CommunityRef{barelbv1beta1.CommunityRef(in)}
			apiErr = env.Client.Create(ctx, adv, client.DryRunAll)
			_, goErr = config.ParseCommunity(in)
			goOK := goErr == nil || config.IsCommunityName(in)
			if (apiErr == nil) != goOK {
				t.Errorf("community reference %q: API server error %v, Go accepts %v", in, apiErr, goOK)
			}
		}
	})
}
