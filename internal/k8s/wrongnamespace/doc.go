// Package wrongnamespace tells barelb configuration objects created outside
// barelb's namespace that they are ignored: barelb, like MetalLB, reads its
// configuration only in the namespace it runs in, and an operator who put
// an L2Advertisement in "default" deserves to hear why nothing happens.
// (IPAddressPools say it in their Valid condition instead.)
package wrongnamespace
