//go:build !linux

package layer2

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
)

// The operations of membership.
const (
	joinGroup = iota
	leaveGroup
)

// membership needs Linux's packet-socket multicast options. Elsewhere a
// Responder cannot open its sockets in the first place (mdlayher/packet
// says "not implemented"), so this is never reached; it says the same.
func (r *Responder) membership(ip netip.Addr, _ int) error {
	return fmt.Errorf("layer2: multicast membership for %s is not implemented on %s: %w", ip, runtime.GOOS, errors.ErrUnsupported)
}
