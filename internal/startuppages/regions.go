package startuppages

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Region is a range of addresses [Start, End) mapped from the executable.
type Region struct {
	Start, End uint64
}

// Size is the region's length in bytes.
func (r Region) Size() uint64 { return r.End - r.Start }

// deletedSuffix is what /proc/PID/maps appends to the path of a file
// removed or replaced since it was mapped (an upgraded binary).
const deletedSuffix = " (deleted)"

// mapping is one entry of /proc/PID/smaps: the maps line and the counters
// that follow it.
type mapping struct {
	region Region
	perms  string
	path   string
	// anonymous and swap are the Anonymous and Swap counters in bytes;
	// sawAnon and sawSwap say whether their lines were there.
	anonymous, swap  uint64
	sawAnon, sawSwap bool
}

// releasable says whether dropping m's pages is safe: a private,
// read-only mapping of exe that holds no page of its own. A private file
// mapping gets an anonymous page when it is written (copy on write): the
// dynamic loader relocates the RELRO segment of a PIE or externally
// linked binary (pointers to the program's own code and data, the
// address it was loaded at added) and then makes it read-only, so it
// looks like read-only data in maps but differs from the file. Dropping
// such a page would bring back the file's unrelocated bytes at the next
// touch, and the program would follow pointers into nowhere. Anonymous 0
// and Swap 0 mean every resident page is the file's own and none was
// written and swapped out. A mapping whose counters are missing is kept.
func (m mapping) releasable(exe string) bool {
	return m.path == exe && m.perms[1] != 'w' && m.perms[3] == 'p' &&
		m.sawAnon && m.sawSwap && m.anonymous == 0 && m.swap == 0
}

// ReleasableRegions lists the mappings of the file exe in smaps (the
// format of /proc/PID/smaps) whose pages can be dropped safely (see
// mapping.releasable): private, not writable, and never written. A line it
// cannot read is an error: releasing a range it misread could drop a page
// the program wrote.
func ReleasableRegions(smaps io.Reader, exe string) ([]Region, error) {
	var (
		regions []Region
		current *mapping
	)
	flush := func() {
		if current != nil && current.releasable(exe) {
			regions = append(regions, current.region)
		}
	}
	scanner := bufio.NewScanner(smaps)
	for line := 1; scanner.Scan(); line++ {
		text := scanner.Text()
		if strings.TrimSpace(text) == "" {
			continue
		}
		first, rest, _ := strings.Cut(text, " ")
		if strings.HasSuffix(first, ":") {
			// A counter ("Anonymous:   12 kB") or VmFlags of the mapping
			// above.
			if current == nil {
				return nil, fmt.Errorf("smaps line %d %q: a field before any mapping", line, text)
			}
			switch first {
			case "Anonymous:", "Swap:":
				n, err := parseKB(rest)
				if err != nil {
					return nil, fmt.Errorf("smaps line %d %q: %w", line, text, err)
				}
				if first == "Anonymous:" {
					current.anonymous, current.sawAnon = n, true
				} else {
					current.swap, current.sawSwap = n, true
				}
			}
			continue
		}
		flush()
		m, err := parseMapsLine(text)
		if err != nil {
			return nil, fmt.Errorf("smaps line %d %q: %w", line, text, err)
		}
		current = &m
	}
	if err := scanner.Err(); err != nil {
		return nil, fmt.Errorf("reading the memory map: %w", err)
	}
	flush()
	return regions, nil
}

// parseMapsLine reads "address perms offset dev inode [path]"; the path
// may hold spaces.
func parseMapsLine(text string) (mapping, error) {
	fields := strings.SplitN(text, " ", 6)
	if len(fields) < 5 {
		return mapping{}, fmt.Errorf("want at least 5 fields")
	}
	var m mapping
	if len(fields) == 6 {
		m.path = strings.TrimSuffix(strings.TrimLeft(fields[5], " "), deletedSuffix)
	}
	m.perms = fields[1]
	if len(m.perms) != 4 {
		return mapping{}, fmt.Errorf("permissions %q are not 4 letters", m.perms)
	}
	start, end, ok := strings.Cut(fields[0], "-")
	if !ok {
		return mapping{}, fmt.Errorf("address range %q has no '-'", fields[0])
	}
	r, err := parseRange(start, end)
	if err != nil {
		return mapping{}, err
	}
	m.region = r
	return m, nil
}

// parseKB reads a counter's value, "   12 kB", in bytes.
func parseKB(value string) (uint64, error) {
	number, unit, _ := strings.Cut(strings.TrimSpace(value), " ")
	if unit != "kB" {
		return 0, fmt.Errorf("unit %q, want kB", unit)
	}
	n, err := strconv.ParseUint(number, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("counter %q: %w", number, err)
	}
	return n << 10, nil
}

func parseRange(start, end string) (Region, error) {
	s, err := strconv.ParseUint(start, 16, 64)
	if err != nil {
		return Region{}, fmt.Errorf("start address %q: %w", start, err)
	}
	e, err := strconv.ParseUint(end, 16, 64)
	if err != nil {
		return Region{}, fmt.Errorf("end address %q: %w", end, err)
	}
	if e <= s {
		return Region{}, fmt.Errorf("address range %s-%s is empty", start, end)
	}
	return Region{Start: s, End: e}, nil
}
