// Package bgp puts BGP mode on the wire: a Speaker opens the BGP sessions
// it is told to open and sends on each the routes it is told to send, using
// GoBGP's server in-process. It never decides anything; it reports what it
// sees (session up and down, with the reason) through events.
//
// # One GoBGP server per peer
//
// A prefix may go to some peers and not others, with attributes (local
// preference, communities) that differ from peer to peer. One GoBGP server
// has one global RIB holding one local path per prefix, so per-peer
// differences would need per-neighbour export policies built from prefix
// sets and rewritten (with a soft reset) on every change. Instead the
// Speaker runs one GoBGP server per peer, each with exactly that peer's
// routes in its global RIB: what a server's RIB holds is what the peer is
// sent, and setting routes is a plain diff of paths. Each server has its
// own router ID and local ASN, so peers with different myASN coexist. No
// server listens (listen port -1): every session is opened actively.
//
// GoBGP's Serve loop never ends, so a server whose peer is removed is
// stopped (StopBgp) and kept for the next new peer rather than leaked.
//
// Known limitation: GoBGP v3 keeps two route-selection settings in package
// variables (table.SelectionOptions, table.UseMultiplePaths) that every
// StartBgp writes and every server reads while propagating paths. The
// Speaker never sets them, so every write stores the same zero values and
// nothing observable changes, but the race detector reports starting a
// server while another one sends routes. Removing it means one GoBGP
// server with per-neighbour export policies (or servers all started
// before any session opens).
package bgp
