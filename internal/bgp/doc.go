// Package bgp puts BGP mode on the wire: a Speaker opens the BGP sessions
// it is told to open and sends on each the routes it is told to send, using
// GoBGP's server in-process. It never decides anything and knows nothing
// of Kubernetes or barelb's API; it reports what it sees (session up and
// down, with the reason) through events.
//
// # One GoBGP server, routes that differ per peer
//
// A prefix may go to some peers and not others, with attributes (local
// preference, communities, the next hop of the other family's routes)
// that differ from peer to peer, while one GoBGP server has one global
// RIB holding one local path per prefix, and per-neighbour export
// policies only for route-server clients. The Speaker therefore runs one
// server for all its peers and carries the per-peer decision in the path
// itself: each path holds one tag per peer it goes to, a large community
// (4294967295:PEER:GROUP) naming the peer and one of its export
// statements. The global export policy has, per peer and per set of
// attributes in use (a group), one statement: "sent to this neighbour and
// tagged for it with this group: accept, set the group's local preference,
// communities and next hop, and drop the tags"; what no statement accepts
// is rejected. The policy never changes for a path in the RIB: a change of
// who gets a prefix, or with what, is a new path with other tags, which
// replaces the old one, and GoBGP withdraws it from the peers the new one
// no longer goes to because their statements still accept the old path.
// Setting routes stays a plain diff of paths, one path per prefix however
// many peers: the RIB does not grow with the number of peers.
//
// Peer IDs are never reused while the Speaker runs, so a tag never names a
// peer it was not made for; a peer's statements are removed once no path
// carries its tags.
//
// A server has one router ID and one session per neighbour address, so a
// peer with its own router ID, or a second session to an address already
// in use (from another source address), runs on another server; in the
// usual case (one router ID, one session per router) there is one. No
// server listens (listen port -1): every session is opened actively.
// A server left without peers is stopped (Stop: StopBgp, which in GoBGP
// v4 also ends the Serve loop, and the server's BFD goroutine) and
// dropped; a stopped GoBGP v4 server takes no more requests, so a server
// needed later is a new one.
//
// # Routes received from the peers
//
// The speaker only advertises, but a router may send its whole table
// back. A global import policy keeps those routes out of the RIB (GoBGP's
// global import policy also judges locally added paths, so it rejects
// routes learnt over iBGP and eBGP and accepts the rest). GoBGP still
// keeps every received path in the peer's Adj-RIB-In: v4.8.0's
// peer.handleUpdate (pkg/server/peer.go) stores every path of an UPDATE
// (table.AdjRib.Update) before propagateUpdate applies the import policy,
// and no neighbour or AFI-SAFI setting turns that off (issue #3139). The
// speaker's memory therefore grows with what the routers send, per peer.
//
// Known limitation with more than one server: GoBGP (v3 and v4.8.0)
// keeps two route-selection settings in package variables
// (table.SelectionOptions, table.UseMultiplePaths in
// internal/pkg/table/destination.go) that every StartBgp writes and every
// server reads while propagating paths. The Speaker never sets them, so
// every write stores the same zero values and nothing observable changes,
// but the race detector can report starting a server while another one
// sends routes. With one server there is nothing to report.
package bgp
