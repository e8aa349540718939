package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/barelb/barelb/internal/startuppages"
)

// SpeakerPID finds the process of node's speaker in /proc: the lab runs
// it with its node's name and its own kubeconfig in the lab's state folder
// (its program may be a wrapper's speaker.real).
func (l *Lab) SpeakerPID(node string) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("listing processes: %w", err)
	}
	kubeconfig := "--kubeconfig=" + filepath.Join(l.StateDir(), "kubeconfig-"+ComponentSpeaker)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if len(args) > 1 && strings.HasPrefix(filepath.Base(args[0]), "speaker") &&
			slices.Contains(args, kubeconfig) && slices.Contains(args, "--node-name="+node) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no speaker process of %s in lab %s", node, l.Prefix())
}

// Memory is a process's resident memory, in MiB.
type Memory struct {
	// RSS is VmRSS: Anon (RssAnon: heap, stacks, written data) plus File
	// (RssFile: mapped pages of the program).
	RSS, Anon, File float64
	// HWM is VmHWM, the peak of RSS.
	HWM float64
}

// ProcessMemory reads a process's resident memory from /proc/PID/status.
func ProcessMemory(pid int) (Memory, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, fmt.Errorf("reading the status of process %d: %w", pid, err)
	}
	resident, err := startuppages.ParseStatus(string(data))
	if err != nil {
		return Memory{}, fmt.Errorf("process %d: %w", pid, err)
	}
	m := Memory{RSS: mib(resident.Total), Anon: mib(resident.Anonymous), File: mib(resident.File)}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				return Memory{}, fmt.Errorf("process %d: VmHWM: %w", pid, err)
			}
			m.HWM = kb / 1024
		}
	}
	return m, nil
}

func mib(bytes uint64) float64 { return float64(bytes) / (1 << 20) }
