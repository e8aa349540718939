package startuppages

import (
	"fmt"
	"strconv"
	"strings"
)

// Resident is a process's resident memory, in bytes, from
// /proc/PID/status.
type Resident struct {
	// Total is VmRSS.
	Total uint64
	// Anonymous is RssAnon: the heap, stacks and written data.
	Anonymous uint64
	// File is RssFile: mapped pages of files, the executable's above all.
	File uint64
}

// ParseStatus reads VmRSS, RssAnon and RssFile (in kB) out of the text of
// /proc/PID/status.
func ParseStatus(status string) (Resident, error) {
	var r Resident
	fields := map[string]*uint64{"VmRSS": &r.Total, "RssAnon": &r.Anonymous, "RssFile": &r.File}
	found := 0
	for _, line := range strings.Split(status, "\n") {
		name, value, ok := strings.Cut(line, ":")
		target, known := fields[name]
		if !ok || !known {
			continue
		}
		number, unit, _ := strings.Cut(strings.TrimSpace(value), " ")
		if unit != "kB" {
			return Resident{}, fmt.Errorf("status field %s %q: want a number of kB", name, strings.TrimSpace(value))
		}
		kib, err := strconv.ParseUint(number, 10, 64)
		if err != nil {
			return Resident{}, fmt.Errorf("status field %s: %w", name, err)
		}
		*target = kib * 1024
		found++
	}
	if found != len(fields) {
		return Resident{}, fmt.Errorf("status has %d of the fields VmRSS, RssAnon and RssFile", found)
	}
	return r, nil
}

// trimDeleted is the path of an executable as the memory map names it.
func trimDeleted(path string) string { return strings.TrimSuffix(path, deletedSuffix) }
