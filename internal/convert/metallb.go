package convert

// MetalLB's configuration, as it is written in manifests. The types mirror
// MetalLB's metallb.io API (v1beta1, and v1beta2 for BGPPeer) and its
// pre-0.13 ConfigMap format closely enough to read them; they are never
// written back.
//
// No field has omitempty: the decoded object is encoded again and every
// path of the input missing from that encoding is a field this converter
// does not know, which it reports instead of dropping silently.

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

type mlbSelectorRequirement struct {
	Key      string   `json:"key"`
	Operator string   `json:"operator"`
	Values   []string `json:"values"`
}

type mlbSelector struct {
	MatchLabels      map[string]string        `json:"matchLabels"`
	MatchExpressions []mlbSelectorRequirement `json:"matchExpressions"`
}

type mlbServiceAllocation struct {
	Priority           int           `json:"priority"`
	Namespaces         []string      `json:"namespaces"`
	NamespaceSelectors []mlbSelector `json:"namespaceSelectors"`
	ServiceSelectors   []mlbSelector `json:"serviceSelectors"`
}

type mlbIPAddressPoolSpec struct {
	Addresses         []string              `json:"addresses"`
	AutoAssign        *bool                 `json:"autoAssign"`
	AvoidBuggyIPs     bool                  `json:"avoidBuggyIPs"`
	ServiceAllocation *mlbServiceAllocation `json:"serviceAllocation"`
}

type mlbL2AdvertisementSpec struct {
	IPAddressPools         []string      `json:"ipAddressPools"`
	IPAddressPoolSelectors []mlbSelector `json:"ipAddressPoolSelectors"`
	NodeSelectors          []mlbSelector `json:"nodeSelectors"`
	Interfaces             []string      `json:"interfaces"`
}

type mlbBGPAdvertisementSpec struct {
	AggregationLength      *int32        `json:"aggregationLength"`
	AggregationLengthV6    *int32        `json:"aggregationLengthV6"`
	LocalPref              uint32        `json:"localPref"`
	Communities            []string      `json:"communities"`
	IPAddressPools         []string      `json:"ipAddressPools"`
	IPAddressPoolSelectors []mlbSelector `json:"ipAddressPoolSelectors"`
	NodeSelectors          []mlbSelector `json:"nodeSelectors"`
	Peers                  []string      `json:"peers"`
}

type mlbSecretReference struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
}

// mlbBGPPeerSpec is v1beta2's BGPPeer; v1beta1's is a subset of it, with
// nodeSelectors of the same shape.
type mlbBGPPeerSpec struct {
	MyASN                  uint32              `json:"myASN"`
	PeerASN                uint32              `json:"peerASN"`
	DynamicASN             string              `json:"dynamicASN"`
	PeerAddress            string              `json:"peerAddress"`
	Interface              string              `json:"interface"`
	SourceAddress          string              `json:"sourceAddress"`
	PeerPort               uint16              `json:"peerPort"`
	HoldTime               *metav1.Duration    `json:"holdTime"`
	KeepaliveTime          *metav1.Duration    `json:"keepaliveTime"`
	ConnectTime            *metav1.Duration    `json:"connectTime"`
	RouterID               string              `json:"routerID"`
	NodeSelectors          []mlbSelector       `json:"nodeSelectors"`
	Password               string              `json:"password"`
	PasswordSecret         *mlbSecretReference `json:"passwordSecret"`
	BFDProfile             string              `json:"bfdProfile"`
	EnableGracefulRestart  bool                `json:"enableGracefulRestart"`
	EBGPMultiHop           bool                `json:"ebgpMultiHop"`
	VRF                    string              `json:"vrf"`
	DisableMP              bool                `json:"disableMP"`
	DualStackAddressFamily bool                `json:"dualStackAddressFamily"`
}

type mlbBFDProfileSpec struct {
	ReceiveInterval  *uint32 `json:"receiveInterval"`
	TransmitInterval *uint32 `json:"transmitInterval"`
	DetectMultiplier *uint32 `json:"detectMultiplier"`
	EchoInterval     *uint32 `json:"echoInterval"`
	EchoMode         *bool   `json:"echoMode"`
	PassiveMode      *bool   `json:"passiveMode"`
	MinimumTTL       *uint32 `json:"minimumTtl"`
}

type mlbCommunityAlias struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type mlbCommunitySpec struct {
	Communities []mlbCommunityAlias `json:"communities"`
}

type mlbLegacyBGPAdvertisementCR struct {
	AggregationLength   *int32   `json:"aggregationLength"`
	AggregationLengthV6 *int32   `json:"aggregationLengthV6"`
	LocalPref           uint32   `json:"localPref"`
	Communities         []string `json:"communities"`
}

// mlbAddressPoolSpec is the AddressPool kind (metallb.io v1alpha1 and
// v1beta1), deprecated in MetalLB 0.13 and removed in 0.14.
type mlbAddressPoolSpec struct {
	Protocol          string                        `json:"protocol"`
	Addresses         []string                      `json:"addresses"`
	AutoAssign        *bool                         `json:"autoAssign"`
	AvoidBuggyIPs     bool                          `json:"avoidBuggyIPs"`
	BGPAdvertisements []mlbLegacyBGPAdvertisementCR `json:"bgpAdvertisements"`
}

// The ConfigMap format of MetalLB before 0.13: data.config of the
// ConfigMap "config" in metallb-system.

type legacyConfig struct {
	Peers          []legacyPeer       `json:"peers"`
	BGPCommunities map[string]string  `json:"bgp-communities"`
	Pools          []legacyPool       `json:"address-pools"`
	BFDProfiles    []legacyBFDProfile `json:"bfd-profiles"`
}

type legacySelectorRequirement struct {
	Key      string   `json:"key"`
	Operator string   `json:"operator"`
	Values   []string `json:"values"`
}

type legacySelector struct {
	MatchLabels      map[string]string           `json:"match-labels"`
	MatchExpressions []legacySelectorRequirement `json:"match-expressions"`
}

type legacyPeer struct {
	MyASN         uint32           `json:"my-asn"`
	PeerASN       uint32           `json:"peer-asn"`
	PeerAddress   string           `json:"peer-address"`
	SourceAddress string           `json:"source-address"`
	PeerPort      uint16           `json:"peer-port"`
	HoldTime      string           `json:"hold-time"`
	KeepaliveTime string           `json:"keepalive-time"`
	RouterID      string           `json:"router-id"`
	NodeSelectors []legacySelector `json:"node-selectors"`
	Password      string           `json:"password"`
	BFDProfile    string           `json:"bfd-profile"`
	EBGPMultiHop  bool             `json:"ebgp-multihop"`
}

type legacyBGPAdvertisement struct {
	AggregationLength   *int32   `json:"aggregation-length"`
	AggregationLengthV6 *int32   `json:"aggregation-length-v6"`
	LocalPref           *uint32  `json:"localpref"`
	Communities         []string `json:"communities"`
}

type legacyPool struct {
	Name              string                   `json:"name"`
	Protocol          string                   `json:"protocol"`
	Addresses         []string                 `json:"addresses"`
	AvoidBuggyIPs     bool                     `json:"avoid-buggy-ips"`
	AutoAssign        *bool                    `json:"auto-assign"`
	BGPAdvertisements []legacyBGPAdvertisement `json:"bgp-advertisements"`
}

type legacyBFDProfile struct {
	Name             string  `json:"name"`
	ReceiveInterval  *uint32 `json:"receive-interval"`
	TransmitInterval *uint32 `json:"transmit-interval"`
	DetectMultiplier *uint32 `json:"detect-multiplier"`
	EchoInterval     *uint32 `json:"echo-interval"`
	EchoMode         bool    `json:"echo-mode"`
	PassiveMode      bool    `json:"passive-mode"`
	MinimumTTL       *uint32 `json:"minimum-ttl"`
}
