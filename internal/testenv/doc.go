// Package testenv starts a real control plane (etcd and kube-apiserver,
// built from source into the repository's bin/ by `make tools`) for
// integration tests, with barelb's CRDs installed.
//
// It is imported only by tests. The binaries are never downloaded: when
// they are missing the test fails and says to run `make tools`.
package testenv
