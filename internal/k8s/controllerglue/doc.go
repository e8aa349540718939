// Package controllerglue holds the few pieces of Kubernetes glue that the
// controller's two Service reconcilers (internal/k8s/allocation for the
// addresses, internal/k8s/announcement for the Announced condition) both
// use: which Services to look at again when something they all depend on
// changes, and the predicate that keeps barelb's own namespace. Keeping
// them here means neither reconciler imports the other.
package controllerglue
