// Package memberlistkey creates the Secret that holds the speakers'
// memberlist key, once per installation.
//
// The speakers encrypt and authenticate their gossip with a shared key.
// A key in the install manifests would be the same in every cluster
// installed from them, so the controller makes a random one on its first
// start instead, as MetalLB's controller does; the speaker DaemonSet reads
// it from the Secret (its pods wait for it to exist).
package memberlistkey
