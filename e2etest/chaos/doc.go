// Package chaos injects the faults that layer-2 mode must survive into the
// lab (e2etest/lab: a real cluster in network namespaces) and checks,
// after each has settled, what a user relies on from the client's side:
// every address is answered (ARP and NDP, asked from the client's
// namespace) by exactly one node, the node its ServiceL2Status names, it
// serves HTTP, and no address changed. barelb's own view (metrics, status
// objects) is what is tested, not the judge.
//
// The tests (go test ./e2etest/chaos/, in make test) run each fault once.
// BenchmarkChaos draws random faults for as long as BARELB_CHAOS says
// (BARELB_CHAOS=1h) and prints the settled double answerers, the
// addresses left unanswered, the time to settle per fault kind and the
// announcer changes without a fault:
//
//	BARELB_CHAOS=10m go test -run='^$' -bench=Chaos -benchtime=1x -timeout=0 ./e2etest/chaos/
//
// Longer runs of two tests: BARELB_TCP_BLOCK=10m (TCP of the memberlist
// port blocked on the busiest node; nothing may move) and BARELB_OUTAGE=5m
// (the API server frozen that long).
package chaos
