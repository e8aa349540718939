package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/barelb/barelb/internal/testutil"
)

// run runs the plugin as its main would.
func run(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Run(context.Background(), args, Streams{In: strings.NewReader(stdin), Out: &out, Err: &errOut})
	return out.String(), errOut.String(), code
}

func TestConvertCommand(t *testing.T) {
	input, err := os.ReadFile(filepath.Join("testdata", "metallb.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	fromFile, warnings, code := run(t, "", "convert", "-f", filepath.Join("testdata", "metallb.yaml"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, warnings)
	}
	testutil.Golden(t, filepath.Join("testdata", "convert.stdout.golden"), []byte(fromFile))
	testutil.Golden(t, filepath.Join("testdata", "convert.stderr.golden"), []byte(warnings))

	for _, args := range [][]string{{"convert"}, {"convert", "-f", "-"}} {
		fromStdin, _, code := run(t, string(input), args...)
		if code != 0 || fromStdin != fromFile {
			t.Errorf("%v: exit %d, and the output differs from reading the file:\n%s", args, code, fromStdin)
		}
	}

	other, _, code := run(t, "", "convert", "-f", filepath.Join("testdata", "metallb.yaml"), "--namespace", "lb")
	if code != 0 || !strings.Contains(other, "namespace: lb\n") || strings.Contains(other, "barelb-system") {
		t.Errorf("--namespace lb: exit %d, output:\n%s", code, other)
	}
}

func TestCommandLineErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		in   string
		code int
		want string
	}{
		{"no command", nil, "", 2, "Usage:"},
		{"unknown command", []string{"frobnicate"}, "", 2, `unknown command "frobnicate"`},
		{"unknown flag", []string{"convert", "--frob"}, "", 2, "convert: unknown flag: --frob"},
		{"stray argument", []string{"convert", "file.yaml"}, "", 2, "convert takes no arguments, got file.yaml"},
		{"missing file", []string{"convert", "-f", "testdata/nope.yaml"}, "", 1, "reading MetalLB configuration: open testdata/nope.yaml"},
		{"malformed input", []string{"convert"}, "apiVersion: v1\nkind: [\n", 1, "stdin:1: the document starting here is not valid YAML"},
		{"unknown kind", []string{"convert"}, "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n", 1, "Pod p (apiVersion v1) is not MetalLB configuration"},
		{"bad output format", []string{"pools", "-o", "yaml"}, "", 2, `--output "yaml": want table or json`},
		{"bad kubeconfig", []string{"pools", "--kubeconfig", "testdata/nope"}, "", 1, "loading the kubeconfig"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := run(t, tc.in, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, errOut)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr does not say %q:\n%s", tc.want, errOut)
			}
			if out != "" {
				t.Errorf("wrote to stdout on error:\n%s", out)
			}
		})
	}
	out, _, code := run(t, "", "status", "--help")
	if code != 0 || !strings.Contains(out, "--kubeconfig") || !strings.Contains(out, "--context") {
		t.Errorf("status --help: exit %d:\n%s", code, out)
	}
}
