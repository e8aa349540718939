// Command speaker is barelb's per-node agent: it runs as a DaemonSet on the
// host network and announces the addresses of LoadBalancer Services from
// its node.
package main
