// Package layer2 makes addresses reachable on a LAN: it answers ARP
// requests (IPv4) and Neighbor Solicitations (IPv6) for the addresses it is
// told to announce, on one interface, and sends gratuitous ARP and
// unsolicited Neighbor Advertisements when it starts announcing one. It
// never decides which addresses to announce; the speaker tells it. Asked
// to, it first probes the link for an address (RFC 5227, duplicate address
// detection) and does not answer for one another host uses; it reports
// such conflicts, and those it sees while answering.
//
// The decisions about single packets are pure functions of bytes and the
// set of owned addresses (fuzzed); the Responder around them only moves
// packets.
package layer2
