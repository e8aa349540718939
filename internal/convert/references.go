package convert

import (
	"fmt"
	"strings"
)

// checkReferences warns about names the output uses but does not define:
// a BFD profile, pool, peer or community that must then already exist in
// barelb's namespace, or the reference does nothing.
func (c *converter) checkReferences() {
	defined := func(kind, name string) bool { return c.names[kind+"/"+name] }
	missing := func(object, field, kind, name string) {
		c.warn(object, field, "names the %s %q, which is not in the input: create it in %s too, or this reference has no effect", kind, name, c.opts.Namespace)
	}
	for _, p := range c.peers {
		if p.Spec.BFDProfile != "" && !defined("BFDProfile", p.Spec.BFDProfile) {
			missing("BGPPeer "+p.Name, "spec.bfdProfile", "BFDProfile", p.Spec.BFDProfile)
		}
	}
	for _, a := range c.l2Advs {
		for i, pool := range a.Spec.IPAddressPools {
			if !defined("IPAddressPool", pool) {
				missing("L2Advertisement "+a.Name, fmt.Sprintf("spec.ipAddressPools[%d]", i), "IPAddressPool", pool)
			}
		}
	}
	communities := map[string]bool{}
	for _, cm := range c.communities {
		for _, e := range cm.Spec.Communities {
			communities[e.Name] = true
		}
	}
	for _, a := range c.bgpAdvs {
		for i, pool := range a.Spec.IPAddressPools {
			if !defined("IPAddressPool", pool) {
				missing("BGPAdvertisement "+a.Name, fmt.Sprintf("spec.ipAddressPools[%d]", i), "IPAddressPool", pool)
			}
		}
		for i, peer := range a.Spec.Peers {
			if !defined("BGPPeer", peer) {
				missing("BGPAdvertisement "+a.Name, fmt.Sprintf("spec.peers[%d]", i), "BGPPeer", peer)
			}
		}
		for i, ref := range a.Spec.Communities {
			if name := string(ref); !strings.Contains(name, ":") && !communities[name] {
				c.warn("BGPAdvertisement "+a.Name, fmt.Sprintf("spec.communities[%d]", i), "names the community %q, which no Community object of the input defines: define it in a Community in %s too", name, c.opts.Namespace)
			}
		}
	}
}
