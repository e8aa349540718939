// Package cli is the kubectl plugin kubectl-barelb: `convert` turns MetalLB
// configuration into barelb's, `status` shows how each LoadBalancer Service
// is served and `pools` how full each IPAddressPool is.
//
// Run is the whole program; the main package only hands it the process's
// arguments and streams. Cluster access follows kubectl's rules
// (KUBECONFIG, --kubeconfig, --context ...) through client-go's clientcmd.
package cli
