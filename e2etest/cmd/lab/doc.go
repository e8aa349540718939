// Command lab drives the barelb lab, a Kubernetes cluster made of processes
// and network namespaces (see package github.com/barelb/barelb/e2etest/lab):
//
//	lab up [--nodes N] [--keep] [--prefix P] [--barelb=false]
//	                                           start a lab (with barelb's controller and
//	                                           speakers unless --barelb=false), print its
//	                                           state as one JSON object
//	lab status                                 print the state of the lab
//	lab down [--all]                           tear the lab (or every lab) down
//	lab exec HOST -- CMD…                      run CMD in a host: a node, client, router, cp, ext
//	lab kill NODE speaker|kube-proxy           SIGKILL a node's component
//	lab stop NODE speaker|kube-proxy           SIGTERM it and wait until it exits
//	lab restart NODE speaker|kube-proxy        (re)start a node's component
//	(kill, stop and restart also take "cp controller")
//
// With several labs, choose one with --lab PREFIX or $BARELB_LAB. `up`
// starts a detached supervisor (this binary, copied into the state folder,
// in "supervise" mode) that keeps the lab running until `down`. --keep
// leaves whatever a failed `up` made, for inspection. Run as root.
package main
