package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// InterfaceInfo names a node interface.
type InterfaceInfo struct {
	// Name of the interface.
	// +optional
	Name string `json:"name,omitempty"`
}

// ServiceL2StatusSpec is empty: the object only reports.
type ServiceL2StatusSpec struct{}

// ServiceL2StatusStatus says which node announces a Service in layer-2 mode.
type ServiceL2StatusStatus struct {
	// Node announces the Service's addresses.
	// +optional
	Node string `json:"node,omitempty"`
	// ServiceName is the Service's name.
	// +optional
	ServiceName string `json:"serviceName,omitempty"`
	// ServiceNamespace is the Service's namespace.
	// +optional
	ServiceNamespace string `json:"serviceNamespace,omitempty"`
	// Addresses are the announced addresses.
	// +optional
	// +listType=atomic
	Addresses []string `json:"addresses,omitempty"`
	// Interfaces the node answers on.
	// +optional
	// +listType=atomic
	Interfaces []InterfaceInfo `json:"interfaces,omitempty"`
}

// ServiceL2Status reports which node announces a Service in layer-2 mode,
// and on which interfaces. Speakers write it; people read it.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=l2status
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.status.node`
// +kubebuilder:printcolumn:name="Service Name",type=string,JSONPath=`.status.serviceName`
// +kubebuilder:printcolumn:name="Service Namespace",type=string,JSONPath=`.status.serviceNamespace`
// +kubebuilder:printcolumn:name="Addresses",type=string,JSONPath=`.status.addresses`
type ServiceL2Status struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ServiceL2StatusSpec   `json:"spec,omitempty"`
	Status ServiceL2StatusStatus `json:"status,omitempty"`
}

// ServiceL2StatusList is a list of ServiceL2Status.
//
// +kubebuilder:object:root=true
type ServiceL2StatusList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ServiceL2Status `json:"items"`
}

// Labels the speakers put on ServiceL2Status and ServiceBGPStatus objects
// to name their Service (object names are shortened and hashed, so
// readers find a Service's statuses by these).
const (
	LabelServiceName      = "barelb.io/service-name"
	LabelServiceNamespace = "barelb.io/service-namespace"
)

// ServiceBGPStatusSpec is empty: the object only reports.
type ServiceBGPStatusSpec struct{}

// ServiceBGPStatusStatus says to which peers one node advertises a Service.
type ServiceBGPStatusStatus struct {
	// Node advertises the Service's addresses.
	// +optional
	Node string `json:"node,omitempty"`
	// ServiceName is the Service's name.
	// +optional
	ServiceName string `json:"serviceName,omitempty"`
	// ServiceNamespace is the Service's namespace.
	// +optional
	ServiceNamespace string `json:"serviceNamespace,omitempty"`
	// Peers are the BGPPeers the addresses are advertised to.
	// +optional
	// +listType=atomic
	Peers []string `json:"peers,omitempty"`
}

// ServiceBGPStatus reports to which BGP peers one node advertises a
// Service. Speakers write one per Service and node.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=bgpstatus
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.status.node`
// +kubebuilder:printcolumn:name="Service Name",type=string,JSONPath=`.status.serviceName`
// +kubebuilder:printcolumn:name="Service Namespace",type=string,JSONPath=`.status.serviceNamespace`
// +kubebuilder:printcolumn:name="Peers",type=string,JSONPath=`.status.peers`
type ServiceBGPStatus struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ServiceBGPStatusSpec   `json:"spec,omitempty"`
	Status ServiceBGPStatusStatus `json:"status,omitempty"`
}

// ServiceBGPStatusList is a list of ServiceBGPStatus.
//
// +kubebuilder:object:root=true
type ServiceBGPStatusList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ServiceBGPStatus `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ServiceL2Status{}, &ServiceL2StatusList{}, &ServiceBGPStatus{}, &ServiceBGPStatusList{})
}
