package testutil

import (
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// update is the -update flag of every test binary that imports testutil.
// Programs that import a package using testutil (the lab's command) do
// not get the flag.
var update *bool

func init() {
	if testing.Testing() {
		update = flag.Bool("update", false, "rewrite the golden files under testdata/ with the tests' output (testutil.Golden)")
	}
}

// Golden compares got with the golden file at path (under the test's
// testdata/). With -update it writes got to the file instead, creating it
// and its folder. A difference is reported as a line diff (-want +got).
func Golden(tb testing.TB, path string, got []byte) {
	tb.Helper()
	if update != nil && *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			tb.Fatalf("writing golden file: %v", err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			tb.Fatalf("writing golden file: %v", err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		tb.Fatalf("golden file %s is missing: run the test with -update to create it, then review it", path)
	}
	if err != nil {
		tb.Fatalf("reading golden file: %v", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		tb.Errorf("%s differs (-want +got); if the change is intended, run the test with -update and review the diff:\n%s", path, diff)
	}
}
