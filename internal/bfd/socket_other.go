//go:build !linux

package bfd

import (
	"errors"
	"fmt"
	"runtime"
)

// bindToDevice is Linux's SO_BINDTODEVICE, which other systems lack: BFD
// sessions bound to an interface are not implemented there.
func bindToDevice(_ int, ifName string) error {
	return fmt.Errorf("bfd: binding a socket to interface %s is not implemented on %s: %w", ifName, runtime.GOOS, errors.ErrUnsupported)
}
