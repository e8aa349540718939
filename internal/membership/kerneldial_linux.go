package membership

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// synsPerDial is how many connections kernelDial opens side by side: each
// sends its own SYN, so one lost packet cannot pass for an unreachable node.
const synsPerDial = 2

// kernelDial connects to ap over TCP and reports what the kernels said
// within window. It opens synsPerDial non-blocking sockets and waits:
//
//   - one connects: answered, with that connection;
//   - one is reset (ECONNREFUSED): refused — the node's kernel answered
//     and nothing listens on the port;
//   - when window is over, every socket is still in SYN_SENT, as read from
//     the kernel (TCP_INFO), and has been for at least minSilence measured
//     from after its connect(2) returned to before the state was read:
//     unanswered — no SYN-ACK reached this host's kernel in that time;
//   - anything else (another error, a connection established only after
//     the window, a window too short): unknown.
//
// The verdicts do not depend on this process being scheduled on time: the
// kernel completes or resets a connection whether or not anyone waits for
// it, and the silence is bounded by timestamps taken around the kernel's
// own state.
func kernelDial(ap netip.AddrPort, window, minSilence time.Duration) dialResult {
	deadline := time.Now().Add(window)
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	var sa unix.Sockaddr
	family := unix.AF_INET
	if ap.Addr().Is4() {
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	} else {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}

	type sock struct {
		fd   int
		sent time.Time // after connect(2) returned: the SYN is out
	}
	var socks []sock
	defer func() {
		for _, s := range socks {
			if s.fd >= 0 {
				_ = unix.Close(s.fd)
			}
		}
	}()
	// take hands socket i over to the caller as a net.Conn.
	take := func(i int) dialResult {
		f := os.NewFile(uintptr(socks[i].fd), "tcp:"+ap.String())
		socks[i].fd = -1
		c, err := net.FileConn(f) // dups the descriptor
		_ = f.Close()
		if err != nil {
			return dialResult{verdict: verdictUnknown, err: err}
		}
		return dialResult{verdict: verdictAnswered, conn: c}
	}
	// settled judges a socket whose connect finished (POLLOUT or error).
	settled := func(i int) dialResult {
		soerr, err := unix.GetsockoptInt(socks[i].fd, unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case err != nil:
			return dialResult{verdict: verdictUnknown, err: err}
		case soerr == 0:
			return take(i)
		case unix.Errno(soerr) == unix.ECONNREFUSED:
			return dialResult{verdict: verdictRefused, err: unix.ECONNREFUSED}
		default:
			return dialResult{verdict: verdictUnknown, err: unix.Errno(soerr)}
		}
	}

	for range synsPerDial {
		fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return dialResult{verdict: verdictUnknown, err: fmt.Errorf("socket: %w", err)}
		}
		err = unix.Connect(fd, sa)
		socks = append(socks, sock{fd: fd, sent: time.Now()})
		switch {
		case err == nil:
			return take(len(socks) - 1)
		case errors.Is(err, unix.ECONNREFUSED):
			return dialResult{verdict: verdictRefused, err: err}
		case errors.Is(err, unix.EINPROGRESS):
		default:
			return dialResult{verdict: verdictUnknown, err: fmt.Errorf("connect: %w", err)}
		}
	}

	pfds := make([]unix.PollFd, len(socks))
	for {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		for i, s := range socks {
			pfds[i] = unix.PollFd{Fd: int32(s.fd), Events: unix.POLLOUT}
		}
		ms := int((left + time.Millisecond - 1) / time.Millisecond)
		n, err := unix.Poll(pfds, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return dialResult{verdict: verdictUnknown, err: fmt.Errorf("poll: %w", err)}
		}
		if n == 0 {
			continue
		}
		for i := range pfds {
			if pfds[i].Revents != 0 {
				return settled(i)
			}
		}
	}

	// The window is over. Ask the kernel what became of each SYN.
	silence := time.Duration(-1)
	for i, s := range socks {
		now := time.Now() // before reading the state: a lower bound
		info, err := unix.GetsockoptTCPInfo(s.fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return dialResult{verdict: verdictUnknown, err: fmt.Errorf("TCP_INFO: %w", err)}
		}
		if info.State != tcpSynSent {
			// Answered or reset after all, while this process was late
			// to look.
			return settled(i)
		}
		if d := now.Sub(s.sent); silence < 0 || d < silence {
			silence = d
		}
	}
	r := dialResult{verdict: verdictUnknown, silence: silence, err: timeoutError{}}
	if silence >= minSilence {
		r.verdict = verdictUnanswered
	}
	return r
}

// tcpSynSent is TCP_SYN_SENT from the kernel's include/net/tcp_states.h.
const tcpSynSent = 2
