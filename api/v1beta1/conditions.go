package v1beta1

// Condition types barelb's controller sets in a LoadBalancer Service's
// status.conditions. Each has one writer: the controller's allocation
// reconciler sets ConditionAddressAssigned, its announcement reconciler
// sets ConditionAnnounced. Each writes only its own entry (a strategic
// merge patch keyed by type), so neither clobbers the other, nor
// status.loadBalancer, nor conditions other components set.
const (
	// ConditionAddressAssigned tells whether the Service has the addresses
	// it asked for. When False, the reason is one of the controller's
	// Event reasons (NoPoolAdmits, PoolExhausted, AddressInUse, …) and
	// the message says what to fix.
	ConditionAddressAssigned = "barelb.io/AddressAssigned"
	// ConditionAnnounced tells whether the Service's addresses are
	// announced: by which node in layer-2 mode, to which BGP peers in BGP
	// mode; when False, why not (one of the AnnouncedReason* values).
	ConditionAnnounced = "barelb.io/Announced"
)

// Reasons of ConditionAddressAssigned when True.
const (
	// AddressReasonAssigned: the Service has every address it asked for.
	AddressReasonAssigned = "IPAllocated"
	// AddressReasonPartial: the Service has addresses of some families
	// but not all (a PreferDualStack Service whose second family no pool
	// has); the message says which.
	AddressReasonPartial = "IPAllocatedPartially"
)

// Reasons of ConditionAnnounced.
const (
	// AnnouncedReasonLayer2: a node answers ARP/NDP for the addresses;
	// the message names it.
	AnnouncedReasonLayer2 = "Layer2"
	// AnnouncedReasonBGP: nodes advertise the addresses to BGP peers
	// with an established session; the message names them.
	AnnouncedReasonBGP = "BGP"
	// AnnouncedReasonLayer2AndBGP: both.
	AnnouncedReasonLayer2AndBGP = "Layer2AndBGP"

	// AnnouncedReasonNoAddress: the Service has no address to announce
	// (see ConditionAddressAssigned).
	AnnouncedReasonNoAddress = "NoAddress"
	// AnnouncedReasonNoAdvertisement: no L2Advertisement or
	// BGPAdvertisement covers the address's pool and the Service.
	AnnouncedReasonNoAdvertisement = "NoAdvertisement"
	// AnnouncedReasonNoEligibleNode: the advertisements covering the
	// pool select no Ready node that runs a speaker.
	AnnouncedReasonNoEligibleNode = "NoEligibleNode"
	// AnnouncedReasonNoReadyEndpoint: the Service has
	// externalTrafficPolicy Local and no ready endpoint on any eligible
	// node, so no node may announce it.
	AnnouncedReasonNoReadyEndpoint = "NoReadyEndpoint"
	// AnnouncedReasonNoCommonEndpoint: the address is shared with other
	// Services, some with externalTrafficPolicy Local, and no eligible
	// node holds a ready endpoint of every Local one, so no node may
	// announce it.
	AnnouncedReasonNoCommonEndpoint = "NoCommonEndpoint"
	// AnnouncedReasonNoBGPPeer: a BGPAdvertisement covers the pool, but
	// no BGPPeer it goes to selects an eligible node.
	AnnouncedReasonNoBGPPeer = "NoBGPPeer"
	// AnnouncedReasonNoBGPSessionUp: the nodes advertise the addresses,
	// but none of their sessions to the peers is established.
	AnnouncedReasonNoBGPSessionUp = "NoBGPSessionUp"
	// AnnouncedReasonPending: everything is in place, but no speaker
	// reports announcing the addresses yet (for a moment after a change;
	// for long, look at the speakers' logs and Events).
	AnnouncedReasonPending = "Pending"
)
