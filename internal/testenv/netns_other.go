//go:build !linux

package testenv

import (
	"errors"
	"fmt"
	"runtime"
)

// InNetns needs Linux network namespaces.
func InNetns(name string, _ func() error) error {
	return fmt.Errorf("testenv: entering network namespace %s is not implemented on %s: %w", name, runtime.GOOS, errors.ErrUnsupported)
}
