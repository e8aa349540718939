package startuppages

import (
	"os"
	"runtime"
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
	maps, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	regions, err := ReadOnlyRegions(maps, trimDeleted(exe))
	maps.Close()
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
