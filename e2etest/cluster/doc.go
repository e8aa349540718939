// Package cluster installs barelb as its users do, on real nodes: every
// lab node runs containerd, runc and the real kubelet (lab.Options.Kubelets),
// the images are built locally and imported into each node's containerd,
// and barelb is installed from its manifests (`kubectl apply -k` of an
// overlay of config/default that only sets the images, `helm install` of
// config/helm/barelb, or the single file `make release` writes). The tests
// then check from the outside that the speaker DaemonSet and the controller
// Deployment run as declared and that a VIP answers the LAN's client.
//
// The suite needs root, `make deps tools images cluster-images`, and takes
// minutes; see README ("The cluster suite") for what runs in `make test`.
package cluster
