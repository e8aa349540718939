// Package scale holds benchmarks of barelb at cluster scale against a real
// API server: how fast the controller gives 10,000 Services an address
// compared with a plain client doing the same writes, its memory, and how
// long a cold start with 10,000 assigned Services takes. They print numbers
// (`make bench-scale`) and assert only correctness, never speed.
package scale
