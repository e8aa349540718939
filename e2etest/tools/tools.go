//go:build tools

// Package tools pins the versions of the programs the tests and the build
// run: a real kube-apiserver, kube-proxy, kube-controller-manager,
// kube-scheduler and kubelet, etcd,
// controller-gen and staticcheck. They are built from source by `make tools`
// into bin/; nothing prebuilt is downloaded.
package tools

import (
	_ "honnef.co/go/tools/cmd/staticcheck"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "sigs.k8s.io/controller-tools/cmd/controller-gen"
)
