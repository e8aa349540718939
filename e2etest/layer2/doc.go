// Package layer2 runs barelb in the lab (a real cluster in network
// namespaces, see e2etest/lab) and proves layer-2 mode end to end: the
// controller assigns a Service its addresses, one speaker answers ARP and
// NDP for them, a client on the LAN reaches the backends, and another node
// takes over when the announcing speaker dies or its node leaves the LAN.
//
// Outages are measured by a client sending one request every 10 ms (a new
// TCP connection each, 200 ms timeout) and reported with t.Logf; the
// assertions are generous bounds so that the suite does not flake on a busy
// machine. BenchmarkFailover (SIGKILL) and BenchmarkCutFailover (LAN link
// down) repeat the take-over for the record, and BenchmarkNoFalseFailover
// (soak_test.go) counts announcer changes while busy loops load the CPUs:
//
//	go test -run='^$' -bench='^Benchmark(Cut)?Failover$' -benchtime=1x ./e2etest/layer2/
//	BARELB_SOAK=10m go test -run='^$' -bench=NoFalseFailover -benchtime=1x -timeout=30m ./e2etest/layer2/
package layer2
