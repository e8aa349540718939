// Package l2announcer is the speaker's Kubernetes glue for layer-2 mode: it
// reads Services, EndpointSlices, Nodes, pools and L2Advertisements, asks
// internal/election which node announces each address, makes this node's
// responders answer for the addresses it won, and reports that in
// ServiceL2Status objects and Events.
package l2announcer
