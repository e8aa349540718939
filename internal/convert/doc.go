// Package convert turns MetalLB configuration into barelb's: the metallb.io
// custom resources (IPAddressPool, L2Advertisement, BGPAdvertisement,
// BGPPeer, BFDProfile, Community, and the older AddressPool) and the
// ConfigMap format MetalLB read before 0.13 become barelb.io/v1beta1
// objects.
//
// The conversion is a pure function over bytes: it talks to no cluster.
// Whatever it cannot carry over it reports as a Warning naming the object
// and the field, and it never drops a field silently: a field it does not
// know is reported as well.
package convert
