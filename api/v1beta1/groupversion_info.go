// Package v1beta1 holds barelb's configuration API, group barelb.io.
//
// Its field names and meanings follow MetalLB's metallb.io API, so that a
// MetalLB manifest works here after changing only its apiVersion.
// Configuration objects count only in the namespace barelb runs in.
//
// +kubebuilder:object:generate=true
// +groupName=barelb.io
package v1beta1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every type in this package.
	GroupVersion = schema.GroupVersion{Group: "barelb.io", Version: "v1beta1"}

	// SchemeBuilder registers this package's types with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds this package's types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
