package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BGPAdvertisementSpec says how pools' addresses are advertised to BGP peers.
type BGPAdvertisementSpec struct {
	// AggregationLength is the prefix length IPv4 addresses are advertised
	// with: 32 advertises each address alone; shorter lengths aggregate.
	// +optional
	// +kubebuilder:default:=32
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=32
	AggregationLength *int32 `json:"aggregationLength,omitempty"`

	// AggregationLengthV6 is the prefix length for IPv6 addresses.
	// +optional
	// +kubebuilder:default:=128
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=128
	AggregationLengthV6 *int32 `json:"aggregationLengthV6,omitempty"`

	// LocalPref is the LOCAL_PREF attribute sent to iBGP peers; eBGP peers
	// never see it.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=4294967295
	LocalPref uint32 `json:"localPref,omitempty"`

	// Communities are attached to the advertised prefixes: written out or
	// named after a Community object's entry.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	Communities []CommunityRef `json:"communities,omitempty"`

	// IPAddressPools names the pools advertised. With neither this nor
	// ipAddressPoolSelectors, every pool is advertised.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MinLength=1
	// +listType=set
	IPAddressPools []string `json:"ipAddressPools,omitempty"`

	// IPAddressPoolSelectors select the pools advertised, by label.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	IPAddressPoolSelectors []Selector `json:"ipAddressPoolSelectors,omitempty"`

	// NodeSelectors limit the nodes that advertise. Empty means every node.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	NodeSelectors []Selector `json:"nodeSelectors,omitempty"`

	// ServiceSelectors limit the advertisement to Services with these labels.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	ServiceSelectors []Selector `json:"serviceSelectors,omitempty"`

	// Peers names the BGPPeers to advertise to. Empty means every peer.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MinLength=1
	// +listType=set
	Peers []string `json:"peers,omitempty"`
}

// BGPAdvertisementStatus is reserved for future use.
type BGPAdvertisementStatus struct{}

// BGPAdvertisement advertises pools' addresses to BGP peers.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=bgpadv
// +kubebuilder:printcolumn:name="IPAddressPools",type=string,JSONPath=`.spec.ipAddressPools`
// +kubebuilder:printcolumn:name="Peers",type=string,JSONPath=`.spec.peers`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BGPAdvertisement struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   BGPAdvertisementSpec   `json:"spec,omitempty"`
	Status BGPAdvertisementStatus `json:"status,omitempty"`
}

// BGPAdvertisementList is a list of BGPAdvertisement.
//
// +kubebuilder:object:root=true
type BGPAdvertisementList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BGPAdvertisement `json:"items"`
}

func init() {
	SchemeBuilder.Register(&BGPAdvertisement{}, &BGPAdvertisementList{})
}
