// Package speakerglue holds the few pieces of Kubernetes glue that the
// speaker's layer-2 side (internal/k8s/l2announcer) and BGP side
// (internal/k8s/bgpadvertiser) both use: reading a node's own address and
// conditions, and the watch predicate that drops updates which change nothing the speaker
// reads. Keeping them here means neither side imports the other.
package speakerglue
