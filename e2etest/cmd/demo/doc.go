// Command demo shows barelb at work, for `make demo`: it starts the lab (a
// three-node Kubernetes cluster in network namespaces) with barelb, gives a
// LoadBalancer Service an address, reaches it from a client on the LAN, and
// SIGKILLs the announcing node's speaker while a request loop runs.
//
// With --cluster (`make demo-cluster`) the nodes are real ones (a kubelet
// and containerd each), barelb is installed with `kubectl apply -k` as the
// README says, a Deployment sits behind the Service, and the announcing
// node dies as a machine does (LAN link down, kubelet, containerd and
// containers stopped).
//
// With KEEP=1 (or --keep) the lab stays up until Ctrl-C, and the demo
// prints how to use kubectl on it. Run as root from the repository, after
// `make tools build` (and `make images cluster-images` for --cluster).
package main
