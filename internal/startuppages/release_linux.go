package startuppages

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Release drops this process's mappings of the pages of its executable's
// read-only mappings that were never written (see ReleasableRegions and
// the package comment) and returns how many bytes of address space it
// covered.
func Release() (uint64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("finding the executable: %w", err)
	}
	// smaps, not maps: only its counters tell a relocated (RELRO) page
	// from the file's own.
	smaps, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, fmt.Errorf("reading the memory map: %w", err)
	}
	defer smaps.Close()
	regions, err := ReleasableRegions(smaps, trimDeleted(exe))
	if err != nil {
		return 0, err
	}
	var covered uint64
	for _, r := range regions {
		// The raw system call takes the range as numbers: no pointer to
		// memory the Go runtime does not own is ever made.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(r.Start), uintptr(r.Size()), unix.MADV_DONTNEED); errno != 0 {
			return covered, fmt.Errorf("madvise %#x-%#x: %w", r.Start, r.End, errno)
		}
		covered += r.Size()
	}
	return covered, nil
}

// ResidentSet reads this process's resident memory from /proc/self/status.
func ResidentSet() (Resident, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return Resident{}, fmt.Errorf("reading the process status: %w", err)
	}
	return ParseStatus(string(data))
}
