// Package servicecache keeps, in a speaker, a compact record of every
// LoadBalancer Service, of the nodes holding ready endpoints of each
// Service (from EndpointSlices), and optionally of the ServiceL2Status
// objects of barelb's namespace, fed by watches of its own.
//
// It replaces the typed informer caches of these kinds: a speaker announcing
// 10,000 Services held 10,000 Services, EndpointSlices and ServiceL2Statuses
// as typed objects (trimmed, still about 1 KiB each with their maps and
// strings) and decoded every initial list into one large typed list at once.
// Here every list is read page by page (500 objects), core kinds in
// protobuf, and each object becomes a small plain record as soon as it is
// decoded; nothing else of it is kept.
//
// Records are immutable once stored: readers get shared pointers and must
// not modify them. Every speaker reconciler (layer 2, BGP) reads the same
// Cache, made once by the speaker's wiring, and subscribes to its changes:
//
//	ctrl.NewControllerManagedBy(mgr).Named("...").
//		WatchesRawSource(source.Channel(cache.Subscribe(), toPlan))...
//	// in Reconcile, once cache.WaitForSync(ctx):
//	for _, svc := range cache.Services() {
//		if !svc.ServedBy(lbClass) || svc.Pool == "" || len(svc.Addresses) == 0 {
//			continue
//		}
//		nodes := cache.EndpointNodes(svc.Key()) // for LocalTraffic
//		recorder.Event(svc.Ref(), ...)
//	}
//
// Nodes, pools and advertisements, a handful each, stay in the manager's
// typed cache. Reading Services or EndpointSlices through the manager's
// client would start typed informers of them again, and with them the
// memory this package saves.
package servicecache
