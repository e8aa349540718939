// Package servicecondition writes one condition type in a Service's
// status.conditions for the controller's reconcilers that own one each
// (barelb.io/AddressAssigned, barelb.io/Announced): it tells whether a
// condition must be written at all (writes only on change, so that
// resyncs of 10,000 Services write nothing) and builds the strategic
// merge patch that sets or removes that one entry, keyed by type, without
// touching the other entries or status.loadBalancer.
package servicecondition
