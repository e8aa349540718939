//go:build !linux

package startuppages

import "errors"

// errUnsupported: only Linux's madvise and /proc are used.
var errUnsupported = errors.New("releasing program pages is only supported on Linux")

// Release is Linux only.
func Release() (uint64, error) { return 0, errUnsupported }

// ResidentSet is Linux only.
func ResidentSet() (Resident, error) { return Resident{}, errUnsupported }
