// Command demo shows barelb at work, for `make demo`: it starts the lab (a
// three-node Kubernetes cluster in network namespaces) with barelb, gives a
// LoadBalancer Service an address, reaches it from a client on the LAN, and
// SIGKILLs the announcing node's speaker while a request loop runs.
//
// With KEEP=1 (or --keep) the lab stays up until Ctrl-C, and the demo
// prints how to use kubectl on it. Run as root from the repository, after
// `make tools build`.
package main
