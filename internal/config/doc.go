// Package config turns barelb's configuration objects (api/v1beta1) and
// the parts of Services barelb reads into validated plain models, on which
// the pure decision packages (internal/allocator, internal/election,
// internal/bgpplan, internal/admission) work without knowing Kubernetes:
//
//   - addresses, ranges and communities: the parsers (ParseAddressRange,
//     ParseCommunity);
//   - pools: PoolFromAPI, their order and admission of Services, overlaps,
//     and which definition is in force after a refused edit (ResolvePools,
//     PoolInForce);
//   - L2Advertisements, BGPPeers, BGPAdvertisements and Community aliases
//     (L2AdvertisementFromAPI, BGPPeerFromAPI, BGPAdvertisementFromAPI,
//     CommunityAliases);
//   - BFDProfiles as the BFD wire's timers (BFDProfile), so that
//     internal/bfd knows nothing of the API;
//   - what a Service asks for: ParseServiceRequest (pool, addresses,
//     sharing key, with MetalLB's annotation aliases).
//
// The API server already validates the strings with CEL rules (see
// api/v1beta1). The parsers here accept exactly the strings those rules
// accept, so that an object the API server admits never fails later in the
// controller or speaker, and an object it would refuse is refused here too
// when it arrives some other way (a test sends the same inputs to both).
package config
