// Package scale holds benchmarks of barelb at cluster scale against a real
// API server: how fast the controller gives 10,000 Services an address
// compared with a plain client doing the same writes, its memory, and how
// long a cold start with 10,000 assigned Services takes (BenchmarkAllocation,
// `make bench`); one real speaker announcing 10,000 Services in a
// one-node lab, its memory, the time one more Service takes and a restart
// (BenchmarkSpeaker, root only); and what the speaker's cache keeps per
// object (BenchmarkSpeakerCache). They print numbers and assert only
// correctness, never speed; none runs without -bench.
package scale
