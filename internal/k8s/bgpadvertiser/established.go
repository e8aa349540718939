package bgpadvertiser

import (
	"sync/atomic"

	"github.com/barelb/barelb/internal/bgp"
)

// Sessions names the BGPPeers whose sessions from this node are
// established, for the speaker's Lease (the controller's
// barelb.io/Announced condition reads it there). Setup connects it to
// the node's BGP speaker; until then it names none.
type Sessions struct {
	speaker atomic.Pointer[bgp.Speaker]
}

// Established names the peers with an established session, sorted.
func (s *Sessions) Established() []string {
	sp := s.speaker.Load()
	if sp == nil {
		return nil
	}
	var out []string
	for _, st := range sp.Peers() { // sorted by peer
		if st.Up {
			out = append(out, st.Peer)
		}
	}
	return out
}
