//go:build !linux

package lab

import (
	"errors"
	"fmt"
	"runtime"
	"syscall"
)

// errNoLab says why the lab cannot run here: it is made of Linux network
// namespaces.
var errNoLab = fmt.Errorf("lab: network namespaces are not implemented on %s: %w", runtime.GOOS, errors.ErrUnsupported)

func inNetns(ns string, _ func() error) error {
	return fmt.Errorf("entering network namespace %s: %w", ns, errNoLab)
}

// procAttr has no Pdeathsig outside Linux; the lab never starts a process
// there (it has no namespaces to start it in).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

func unmount(point string) error {
	return fmt.Errorf("unmounting %s: %w", point, errNoLab)
}
