//go:build !linux

package membership

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// synsPerDial is 1 here: the plain dial sends one SYN and never reports
// unanswered.
const synsPerDial = 1

// kernelDial is a plain dial where TCP_INFO is not available: it reports
// answered and refused, never unanswered (a timeout here might be this
// process being late, which only the Linux version can rule out).
func kernelDial(ap netip.AddrPort, window, _ time.Duration) dialResult {
	c, err := net.DialTimeout("tcp", ap.String(), window)
	switch {
	case err == nil:
		return dialResult{verdict: verdictAnswered, conn: c}
	case errors.Is(err, syscall.ECONNREFUSED):
		return dialResult{verdict: verdictRefused, err: err}
	default:
		return dialResult{verdict: verdictUnknown, err: err}
	}
}
