package testenv

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// FreeLoopbackPort returns a port that is free for both TCP and UDP on
// 127.0.0.1 (memberlist binds both), picked just below the kernel's
// ephemeral range. A port from that range, free when picked, can be taken
// before its use by any outgoing connection's local end, even by a
// member's own join attempts to it (a TCP connect to a port of the same
// host can connect to itself).
func FreeLoopbackPort(t testing.TB) int {
	t.Helper()
	low, high := portsBelowEphemeral()
	var last error
	for range 100 {
		port := low + rand.IntN(high-low)
		hostPort := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		l, err := net.Listen("tcp", hostPort)
		if err != nil {
			last = err
			continue
		}
		u, err := net.ListenPacket("udp", hostPort)
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
		last = err
	}
	t.Fatalf("no free port on 127.0.0.1 in %d-%d after 100 tries; the last: %v", low, high, last)
	return 0
}

// portsBelowEphemeral is the range FreeLoopbackPort picks from.
func portsBelowEphemeral() (low, high int) {
	high = 32768
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if fields := strings.Fields(string(data)); len(fields) == 2 {
			if n, err := strconv.Atoi(fields[0]); err == nil && n > 2048 {
				high = n
			}
		}
	}
	return max(1024, high-12000), high
}
