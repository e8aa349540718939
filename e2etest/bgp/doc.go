// Package bgp runs barelb in BGP mode in the lab (a real cluster in
// network namespaces, see e2etest/lab) against a real router, FRR's bgpd
// and bfdd: every eligible node advertises a Service's addresses, the
// router installs the ECMP route and reaches the backends, routes follow
// the Service and its endpoints, TCP MD5, BFD, aggregation and IPv6 over
// an IPv4 session.
//
// What the router sees is read from FRR itself (vtysh `show bgp … json`,
// `show bfd peers json`) and from its kernel (`ip route`). Withdrawal
// times are measured by polling the router's kernel route and reported
// with t.Logf; the assertions are generous bounds that only tell BFD
// (about 0.3 s) from the hold time (6-9 s with holdTime 9s). The
// benchmarks repeat the measurements for the record (bench_test.go):
//
//	go test -run='^$' -bench=BGPWithdrawal -benchtime=1x ./e2etest/bgp/
//	go test -run='^$' -bench=BGPScale -benchtime=1x -timeout=60m ./e2etest/bgp/
package bgp
