package compare

import (
	"errors"
	"os/exec"
	"strings"
	"time"

	"github.com/barelb/barelb/e2etest/lab"
)

// announcer asks the LAN who answers for ip: the node whose MAC the
// client's neighbour entry holds after a request ("" when none).
func announcer(l *lab.Lab, ip string) string {
	_, _ = l.Get("client", lab.URL(ip), time.Second)
	out, err := exec.Command("ip", "-n", l.ClientHost().Netns, "neigh", "show", ip).CombinedOutput()
	if err != nil {
		return ""
	}
	f := strings.Fields(string(out))
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "lladdr" {
			return l.NodeOfMAC(f[i+1])
		}
	}
	return ""
}

// linkPort returns the bridge namespace and port of a host's link on a
// segment, to cut it (as a pulled cable) and restore it.
func linkPort(l *lab.Lab, host, segment string) (ns, port string, err error) {
	h, err := l.Host(host)
	if err != nil {
		return "", "", err
	}
	for _, ifc := range h.Interfaces {
		if ifc.Segment == segment {
			return l.State().Bridges[segment], ifc.Port, nil
		}
	}
	return "", "", errors.New(host + " has no link on " + segment)
}

func setLink(ns, port, state string) error {
	out, err := exec.Command("ip", "-n", ns, "link", "set", port, state).CombinedOutput()
	if err != nil {
		return errors.Join(err, errors.New(string(out)))
	}
	return nil
}
