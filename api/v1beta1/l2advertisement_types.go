package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// L2AdvertisementSpec says which pools are announced in layer-2 mode, from
// which nodes and on which interfaces.
type L2AdvertisementSpec struct {
	// IPAddressPools names the pools announced. With neither this nor
	// ipAddressPoolSelectors, every pool is announced.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MinLength=1
	// +listType=set
	IPAddressPools []string `json:"ipAddressPools,omitempty"`

	// IPAddressPoolSelectors select the pools announced, by label.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	IPAddressPoolSelectors []Selector `json:"ipAddressPoolSelectors,omitempty"`

	// NodeSelectors limit the nodes that may announce. Empty means every node.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	NodeSelectors []Selector `json:"nodeSelectors,omitempty"`

	// Interfaces are the node interfaces to answer on. Empty means the
	// interfaces that carry the address's subnet, or else every suitable one.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=15
	// +kubebuilder:validation:items:Pattern=`^[^/\s:]+$`
	// +listType=set
	Interfaces []string `json:"interfaces,omitempty"`

	// ServiceSelectors limit the advertisement to Services with these labels.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	ServiceSelectors []Selector `json:"serviceSelectors,omitempty"`

	// PreferredNodeSelectors weigh the candidate nodes: a node's preference
	// is the sum of the weights of the terms it matches, and the announcing
	// node is chosen among those with the highest sum. A soft preference:
	// when no preferred node is alive, another one announces.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	PreferredNodeSelectors []WeightedNodeSelector `json:"preferredNodeSelectors,omitempty"`
}

// WeightedNodeSelector is one weighted term of a soft node preference.
type WeightedNodeSelector struct {
	// Weight is added to the preference of every node the selector matches.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	Weight int32 `json:"weight"`
	// Preference selects nodes by label.
	Preference Selector `json:"preference"`
}

// L2AdvertisementStatus is reserved for future use.
type L2AdvertisementStatus struct{}

// L2Advertisement announces pools' addresses in layer-2 mode: one elected
// node answers ARP and NDP for each address.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=l2adv
// +kubebuilder:printcolumn:name="IPAddressPools",type=string,JSONPath=`.spec.ipAddressPools`
// +kubebuilder:printcolumn:name="Interfaces",type=string,JSONPath=`.spec.interfaces`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type L2Advertisement struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   L2AdvertisementSpec   `json:"spec,omitempty"`
	Status L2AdvertisementStatus `json:"status,omitempty"`
}

// L2AdvertisementList is a list of L2Advertisement.
//
// +kubebuilder:object:root=true
type L2AdvertisementList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []L2Advertisement `json:"items"`
}

func init() {
	SchemeBuilder.Register(&L2Advertisement{}, &L2AdvertisementList{})
}
