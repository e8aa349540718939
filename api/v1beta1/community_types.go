package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CommunityValue is a BGP community: standard, two 16-bit numbers
// (65000:100), or large, "large:" and three 32-bit numbers
// (large:65000:1:2).
//
// +kubebuilder:validation:MaxLength=48
// +kubebuilder:validation:XValidation:rule="self.startsWith('large:') || (self.matches('^[0-9]{1,5}:[0-9]{1,5}$') && int(self.split(':')[0]) <= 65535 && int(self.split(':')[1]) <= 65535)",messageExpression="'community \"' + self + '\" must be ASN:VALUE with two numbers from 0 to 65535 (65000:100), or large:ASN:V1:V2'"
// +kubebuilder:validation:XValidation:rule="!self.startsWith('large:') || (self.matches('^large:[0-9]{1,10}:[0-9]{1,10}:[0-9]{1,10}$') && int(self.split(':')[1]) <= 4294967295 && int(self.split(':')[2]) <= 4294967295 && int(self.split(':')[3]) <= 4294967295)",messageExpression="'large community \"' + self + '\" must be large:ASN:V1:V2 with three numbers from 0 to 4294967295'"
type CommunityValue string

// CommunityRef is a BGP community written out (see CommunityValue) or the
// name of one defined in a Community object.
//
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=253
// +kubebuilder:validation:XValidation:rule="self.contains(':') || self.matches('^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$')",messageExpression="'\"' + self + '\" is neither a community (65000:100, large:65000:1:2) nor the name of one'"
// +kubebuilder:validation:XValidation:rule="!self.contains(':') || self.startsWith('large:') || (self.matches('^[0-9]{1,5}:[0-9]{1,5}$') && int(self.split(':')[0]) <= 65535 && int(self.split(':')[1]) <= 65535)",messageExpression="'community \"' + self + '\" must be ASN:VALUE with two numbers from 0 to 65535 (65000:100), or large:ASN:V1:V2'"
// +kubebuilder:validation:XValidation:rule="!self.startsWith('large:') || (self.matches('^large:[0-9]{1,10}:[0-9]{1,10}:[0-9]{1,10}$') && int(self.split(':')[1]) <= 4294967295 && int(self.split(':')[2]) <= 4294967295 && int(self.split(':')[3]) <= 4294967295)",messageExpression="'large community \"' + self + '\" must be large:ASN:V1:V2 with three numbers from 0 to 4294967295'"
type CommunityRef string

// CommunityAlias gives a community a name that BGPAdvertisements can use.
type CommunityAlias struct {
	// Name is how advertisements refer to the community.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`
	Name string `json:"name"`
	// Value is the community itself.
	Value CommunityValue `json:"value"`
}

// CommunitySpec lists named communities.
type CommunitySpec struct {
	// Communities are the named communities.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +listType=map
	// +listMapKey=name
	Communities []CommunityAlias `json:"communities,omitempty"`
}

// CommunityStatus is reserved for future use.
type CommunityStatus struct{}

// Community names BGP communities for use in BGPAdvertisements.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
type Community struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   CommunitySpec   `json:"spec,omitempty"`
	Status CommunityStatus `json:"status,omitempty"`
}

// CommunityList is a list of Community.
//
// +kubebuilder:object:root=true
type CommunityList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Community `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Community{}, &CommunityList{})
}
