// Package bfd implements asynchronous Bidirectional Forwarding Detection,
// single-hop and multihop (RFC 5880, RFC 5881, RFC 5883), for barelb's BGP
// speaker, which embeds GoBGP and has no BFD of its own.
//
// The package has three layers:
//
//   - Packet, Marshal and Unmarshal: the control packet of RFC 5880 §4.1,
//     with the reception checks of §6.8.6 that need nothing but the packet.
//     Authentication is not supported: a packet with the A bit is parsed
//     far enough to name its authentication type and then rejected.
//   - Session: the state machine of RFC 5880 §6.8 as a pure value driven
//     by the caller's clock. It never reads the time, sleeps or touches a
//     socket; it is told the time and what arrived and answers with the
//     packet to send and the state transition, if any.
//   - Manager: the UDP transport of RFC 5881 and RFC 5883 around
//     sessions. One listener per address family on port 3784 is shared by
//     all single-hop sessions, one on port 4784 by all multihop ones
//     (opened with the first); packets are demultiplexed by Your
//     Discriminator (or, while it is zero, by the source address) and by
//     the port they came to. Each session sends from its own socket with
//     a source port in 49152–65535 and TTL/hop limit 255. A single-hop
//     session accepts packets with TTL/hop limit 255 only; a multihop one
//     those with at least its profile's MinimumTTL (254 by default, one
//     router between, as FRR's bfdd has it).
//
// Remove sends AdminDown for about the peer's detection time before the
// session's socket closes; adding the same key again ends that at once.
//
// Echo mode, demand mode (as the local side) and authentication are not
// implemented. The Manager reports every state change through a callback;
// Change.PeerFailed tells a failure of the path (the BGP session must be
// brought down at once) from the peer administratively disabling BFD
// (RFC 5882 §3.2: not a reason to tear down the client protocol).
package bfd
