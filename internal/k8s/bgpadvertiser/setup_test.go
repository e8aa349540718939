package bgpadvertiser

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/barelb/barelb/internal/bgp"
)

func TestRestarting(t *testing.T) {
	gr := bgp.Peer{Name: "gr", GracefulRestart: true}
	plain := bgp.Peer{Name: "plain"}
	for _, tc := range []struct {
		name  string
		peers []bgp.Peer
		want  []bgp.Peer
	}{
		{"none", nil, nil},
		{"no graceful restart: every session is closed", []bgp.Peer{plain}, nil},
		{"graceful restart peers stay open, the others are closed", []bgp.Peer{plain, gr}, []bgp.Peer{gr}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, restarting(tc.peers), cmpopts.EquateComparable(netip.Addr{})); diff != "" {
				t.Errorf("restarting (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUnnumberedInterfaces(t *testing.T) {
	peers := []bgp.Peer{{Name: "a", Interface: "eth2"}, {Name: "b", Address: netip.MustParseAddr("198.51.100.1")}, {Name: "c", Interface: "eth1"}, {Name: "d", Interface: "eth2"}}
	if diff := cmp.Diff([]string{"eth1", "eth2"}, unnumberedInterfaces(peers)); diff != "" {
		t.Errorf("unnumberedInterfaces (-want +got):\n%s", diff)
	}
}
