package lab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Leftovers lists what remains of the lab with this prefix: network
// namespaces, live processes whose arguments name the lab, and its state
// folder. An empty list means the lab is gone.
func Leftovers(prefix, stateRoot string) ([]string, error) {
	if stateRoot == "" {
		stateRoot = DefaultStateRoot
	}
	var left []string
	nss, err := labNamespaces(prefix)
	if err != nil {
		return nil, err
	}
	for _, ns := range nss {
		left = append(left, "netns "+ns)
	}
	for _, p := range labProcesses(prefix, stateRoot) {
		left = append(left, fmt.Sprintf("process %d", p))
	}
	dir := filepath.Join(stateRoot, prefix)
	if _, err := os.Stat(dir); err == nil {
		left = append(left, "folder "+dir)
	}
	// Real nodes: the kubelets' cgroup roots and any mount in the folder.
	for _, h := range cgroupHierarchies() {
		cgs, _ := filepath.Glob(filepath.Join(h, prefix+"-*"))
		for _, cg := range cgs {
			left = append(left, "cgroup "+cg)
		}
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(mi), "\n") {
			if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
				left = append(left, "mount "+f[4])
			}
		}
	}
	return left, nil
}

// Cleanup removes everything of the lab with this prefix, also when the
// process that made it is gone: it kills the processes whose arguments name
// the lab, deletes its namespaces (and with them its links) and removes its
// state folder.
func Cleanup(prefix, stateRoot string) error {
	if prefix == "" || strings.ContainsAny(prefix, "/ ") {
		return fmt.Errorf("invalid prefix %q", prefix)
	}
	if stateRoot == "" {
		stateRoot = DefaultStateRoot
	}
	var errs []error
	pids := labProcesses(prefix, stateRoot)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	// Killed processes still hold their namespaces' sockets until they are
	// gone; give them a moment.
	deadline := time.Now().Add(3 * time.Second)
	for len(labProcesses(prefix, stateRoot)) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	// Real nodes: their containers (in the kubelets' cgroup roots), then
	// the mounts of kubelets and containerds.
	nodes, _ := os.ReadDir(filepath.Join(stateRoot, prefix, "nodes"))
	for _, n := range nodes {
		if err := removeCgroup(cgroupRoot(prefix, n.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	if err := unmountUnder(filepath.Join(stateRoot, prefix)); err != nil {
		errs = append(errs, err)
	}
	nss, err := labNamespaces(prefix)
	if err != nil {
		errs = append(errs, err)
	}
	var cmds []string
	for _, ns := range nss {
		cmds = append(cmds, "netns del "+ns)
	}
	if err := ipBatch("", cmds); err != nil {
		// One by one, to remove what can be removed.
		for _, ns := range nss {
			if err := ipCmd("netns", "del", ns); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := os.RemoveAll(filepath.Join(stateRoot, prefix)); err != nil {
		errs = append(errs, fmt.Errorf("removing the state folder: %w", err))
	}
	return errors.Join(errs...)
}

func labNamespaces(prefix string) ([]string, error) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil, fmt.Errorf("ip netns list: %w", err)
	}
	var nss []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], prefix+"-") {
			nss = append(nss, f[0])
		}
	}
	return nss, nil
}

// labProcesses finds live processes (not zombies, not this one) whose
// arguments contain the lab's state folder or a namespace of the lab.
func labProcesses(prefix, stateRoot string) []int {
	dir := []byte(filepath.Join(stateRoot, prefix))
	ns := []byte(prefix + "-")
	return liveProcesses(func(cmdline []byte) bool { return bytes.Contains(cmdline, dir) || bytes.Contains(cmdline, ns) })
}

// liveProcesses lists the live processes (not zombies, not this one)
// whose command line (arguments separated by NUL bytes) match accepts.
func liveProcesses(match func(cmdline []byte) bool) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !match(cmdline) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The state follows the command name in parentheses.
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}
