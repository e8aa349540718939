// Package bgpadvertiser is the speaker's Kubernetes glue for BGP mode: it
// reads BGPPeers, BGPAdvertisements, Communities, BFDProfiles, pools,
// Services, EndpointSlices, this Node and the peers' password Secrets,
// asks internal/bgpplan what this node advertises to whom, tells the
// in-process BGP speaker (internal/bgp) and the BFD manager
// (internal/bfd), and reports in ServiceBGPStatus objects, Events on the
// BGPPeers and metrics.
//
// The decisions here (objects to bgpplan's input and the speaker's
// peers, which statuses to write, which Events to send) are plain
// functions over plain values; the Reconciler only reads, calls them and
// writes.
package bgpadvertiser
