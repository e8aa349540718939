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

// ReadOnlyRegions lists the mappings of the file exe in maps (the format of
// /proc/PID/maps) that can be released safely: private and not writable,
// so that a page faulted in again is the file's own content. A line it
// cannot read is an error: releasing a range it misread could drop a
// writable page.
func ReadOnlyRegions(maps io.Reader, exe string) ([]Region, error) {
	var regions []Region
	scanner := bufio.NewScanner(maps)
	for line := 1; scanner.Scan(); line++ {
		text := scanner.Text()
		if strings.TrimSpace(text) == "" {
			continue
		}
		// address perms offset dev inode [path]; the path may hold spaces.
		fields := strings.SplitN(text, " ", 6)
		if len(fields) < 5 {
			return nil, fmt.Errorf("maps line %d %q: want at least 5 fields", line, text)
		}
		path := ""
		if len(fields) == 6 {
			path = strings.TrimSuffix(strings.TrimLeft(fields[5], " "), deletedSuffix)
		}
		perms := fields[1]
		if len(perms) != 4 {
			return nil, fmt.Errorf("maps line %d %q: permissions %q are not 4 letters", line, text, perms)
		}
		if path != exe || perms[1] == 'w' || perms[3] != 'p' {
			continue
		}
		start, end, ok := strings.Cut(fields[0], "-")
		if !ok {
			return nil, fmt.Errorf("maps line %d %q: address range %q has no '-'", line, text, fields[0])
		}
		r, err := parseRange(start, end)
		if err != nil {
			return nil, fmt.Errorf("maps line %d %q: %w", line, text, err)
		}
		regions = append(regions, r)
	}
	if err := scanner.Err(); err != nil {
		return nil, fmt.Errorf("reading the memory map: %w", err)
	}
	return regions, nil
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
