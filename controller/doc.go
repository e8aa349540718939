// Command controller is barelb's cluster-wide controller: it allocates
// addresses from IPAddressPools to LoadBalancer Services. It runs as a
// Deployment; with --leader-elect (the default) one replica leads and the
// others stand by.
package main
