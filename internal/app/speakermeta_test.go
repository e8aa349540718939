package app

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/barelb/barelb/internal/k8s/l2announcer"
	"github.com/barelb/barelb/internal/membership"
	"github.com/barelb/barelb/internal/testenv"
)

// TestKeepSpeakerMetaCurrent: a NIC that appears while the speaker runs
// gets into its memberlist metadata, so other speakers do not take its
// answers for a foreign host's.
func TestKeepSpeakerMetaCurrent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	ns := "blmeta" + strconv.Itoa(os.Getpid())
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	ip("netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	// veth pairs: the kernel here has no dummy links.
	ip("-n", ns, "link", "add", "eth0", "address", "02:00:00:00:aa:01", "type", "veth", "peer", "name", "peer0", "address", "02:00:00:00:bb:01")

	m, err := membership.New(membership.Config{NodeName: "n1", BindAddr: "127.0.0.1", BindPort: 0, Logger: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- testenv.InNetns(ns, func() error {
			keepSpeakerMetaCurrent(ctx, testr.New(t), m, 50*time.Millisecond, func() bool { return true })
			return nil
		})
	}()
	t.Cleanup(func() { cancel(); <-done })

	names := func() map[string]bool {
		out := map[string]bool{}
		for _, mac := range []net.HardwareAddr{{2, 0, 0, 0, 0xaa, 1}, {2, 0, 0, 0, 0xaa, 2}} {
			if member, ok := l2announcer.SpeakerOf(map[string][]byte{"n1": m.Meta()}, mac); ok {
				out[mac.String()] = member == "n1"
			}
		}
		return out
	}
	deadline := time.Now().Add(10 * time.Second)
	for !names()["02:00:00:00:aa:01"] {
		if time.Now().After(deadline) {
			t.Fatalf("the namespace's first NIC never got into the metadata: %q", m.Meta())
		}
		time.Sleep(20 * time.Millisecond)
	}
	ip("-n", ns, "link", "add", "eth1", "address", "02:00:00:00:aa:02", "type", "veth", "peer", "name", "peer1", "address", "02:00:00:00:bb:02")
	for !names()["02:00:00:00:aa:02"] {
		if time.Now().After(deadline) {
			t.Fatalf("a NIC added later never got into the metadata: %q", m.Meta())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := m.Metadata()["n1"]; string(got) != string(m.Meta()) {
		t.Errorf("Metadata()[n1] = %q, want this member's own %q", got, m.Meta())
	}
}
