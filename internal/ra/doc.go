// Package ra sends ICMPv6 Router Advertisements with a router lifetime of
// 0 (RFC 4861 §4.2, §6.2.3: "not a default router") on an interface, so
// that a router running unnumbered BGP there learns this host's link-local
// address. FRR's `neighbor IFACE interface` finds its peer that way only:
// it opens the session to (and accepts it from) the link-local source of
// the Router Advertisements it hears on the link, as FRR on the other
// side would send them. Hosts on the link ignore an advertisement with
// lifetime 0 as a default router.
package ra
