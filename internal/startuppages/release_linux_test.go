package startuppages

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	// A test binary of 10 MiB rather than 3: the pages the test runs
	// between the release and its reading of the resident set come back
	// (64 KiB around each), about 1 MiB, which must stay a small share of
	// what is released.
	_ "k8s.io/api/core/v1"
)

// TestRelease faults every page of the test binary's read-only mappings in
// (reading them through /proc/self/mem maps them into the process), then
// releases them: the resident file pages must drop by most of what was
// read, and the program must go on running the code it dropped.
func TestRelease(t *testing.T) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	smaps, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	regions, err := ReleasableRegions(smaps, trimDeleted(exe))
	smaps.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(regions) == 0 {
		t.Fatalf("no read-only mapping of %s", exe)
	}
	mem, err := os.Open("/proc/self/mem")
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	var mapped uint64
	buf := make([]byte, 1<<20)
	for _, r := range regions {
		for off := r.Start; off < r.End; off += uint64(len(buf)) {
			n := min(uint64(len(buf)), r.End-off)
			if _, err := mem.ReadAt(buf[:n], int64(off)); err != nil {
				t.Fatalf("reading %#x: %v", off, err)
			}
		}
		mapped += r.Size()
	}
	before, err := ResidentSet()
	if err != nil {
		t.Fatal(err)
	}
	covered, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	after, err := ResidentSet()
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC() // runs code and reads type data that were just dropped
	t.Logf("read-only mappings %.1f MiB (released %.1f MiB): RssFile %.1f -> %.1f MiB, VmRSS %.1f -> %.1f MiB",
		mib(mapped), mib(covered), mib(before.File), mib(after.File), mib(before.Total), mib(after.Total))
	if covered != mapped {
		t.Errorf("released %d bytes of address space, want all %d of the read-only mappings", covered, mapped)
	}
	if before.File < mapped*9/10 {
		t.Fatalf("RssFile %d after reading all %d bytes of the read-only mappings: the pages were not faulted in", before.File, mapped)
	}
	if dropped := before.File - min(before.File, after.File); dropped < mapped/2 {
		t.Errorf("RssFile dropped by %d bytes, want at least half of the %d released", dropped, mapped)
	}
}

// TestReleaseBuildModes builds a program that releases its pages and then
// goes on working (testdata/releaser) the ways Go programs are built: the
// default static binary, a PIE (as distributions build Go programs) and
// an externally linked PIE (cgo, the system linker). In the last two the
// dynamic loader relocates the RELRO segment and then makes it read-only;
// a release that dropped those pages would bring back the file's
// unrelocated bytes and crash the program.
func TestReleaseBuildModes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds three binaries; not in -short")
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Fatalf("the externally linked build needs a C compiler (gcc): %v", err)
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		cgo  string
		args []string
	}{
		{name: "static", cgo: "0"},
		{name: "pie", cgo: "0", args: []string{"-buildmode=pie"}},
		{name: "pie-external", cgo: "1", args: []string{"-buildmode=pie", "-ldflags=-linkmode=external"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := filepath.Join(dir, tc.name)
			build := exec.Command("go", append(append([]string{"build"}, tc.args...), "-o", bin, "./testdata/releaser")...)
			build.Env = append(os.Environ(), "CGO_ENABLED="+tc.cgo)
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("go build %v: %v\n%s", tc.args, err, out)
			}
			out, err := exec.Command(bin).CombinedOutput()
			if err != nil {
				t.Fatalf("%s after its release: %v\n%s", tc.name, err, out)
			}
			t.Logf("%s: %s", tc.name, strings.TrimSpace(string(out)))
		})
	}
}
