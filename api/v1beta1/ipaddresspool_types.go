package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The XValidation rules of AddressRange are written by celgen
// (api/v1beta1/internal/celgen, run by `go generate ./api/...`): edit the
// description there, not the markers.

// AddressRange is one block of addresses a pool hands out: a CIDR
// (198.51.100.0/25, 2001:db8::/120) or an inclusive range FIRST-LAST of one
// family (198.51.100.10-198.51.100.20). Spaces around the dash are allowed,
// as MetalLB allows them.
//
// CEL cannot compare IP addresses, so the range-order rule finds the
// first bit where the two ends differ (the longest prefix of FIRST that
// still holds LAST) and requires FIRST to have a 0 there. The prefix
// lengths are listed as flat literals because the API server's cost
// estimate cannot bound the size of a converted number or a nested list.
//
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=83
// +kubebuilder:validation:XValidation:rule="self.contains('-') || isCIDR(self)",messageExpression="'\"' + self + '\" is neither a CIDR (like 198.51.100.0/24 or 2001:db8::/120) nor a range FIRST-LAST'"
// +kubebuilder:validation:XValidation:rule="!self.contains('-') || (self.split('-').size() == 2 && isIP(self.split('-')[0].trim()) && isIP(self.split('-')[1].trim()))",messageExpression="'range \"' + self + '\" must be two IP addresses joined by one dash, like 198.51.100.10-198.51.100.20'"
// +kubebuilder:validation:XValidation:rule="!self.contains('-') || self.split('-').size() != 2 || !isIP(self.split('-')[0].trim()) || !isIP(self.split('-')[1].trim()) || ip(self.split('-')[0].trim()).family() == ip(self.split('-')[1].trim()).family()",messageExpression="'range \"' + self + '\" mixes IPv4 and IPv6; use one range per family'"
// +kubebuilder:validation:XValidation:rule="!self.contains('-') || self.split('-').size() != 2 || !isIP(self.split('-')[0].trim()) || !isIP(self.split('-')[1].trim()) || ip(self.split('-')[0].trim()).family() != ip(self.split('-')[1].trim()).family() || ip(self.split('-')[0].trim()) == ip(self.split('-')[1].trim()) || (ip(self.split('-')[0].trim()).family() == 4 ? [0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31] : [0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63,64,65,66,67,68,69,70,71,72,73,74,75,76,77,78,79,80,81,82,83,84,85,86,87,88,89,90,91,92,93,94,95,96,97,98,99,100,101,102,103,104,105,106,107,108,109,110,111,112,113,114,115,116,117,118,119,120,121,122,123,124,125,126,127]).exists(i, cidr(self.split('-')[0].trim() + '/' + ['0','1','2','3','4','5','6','7','8','9','10','11','12','13','14','15','16','17','18','19','20','21','22','23','24','25','26','27','28','29','30','31','32','33','34','35','36','37','38','39','40','41','42','43','44','45','46','47','48','49','50','51','52','53','54','55','56','57','58','59','60','61','62','63','64','65','66','67','68','69','70','71','72','73','74','75','76','77','78','79','80','81','82','83','84','85','86','87','88','89','90','91','92','93','94','95','96','97','98','99','100','101','102','103','104','105','106','107','108','109','110','111','112','113','114','115','116','117','118','119','120','121','122','123','124','125','126','127','128'][i]).containsIP(self.split('-')[1].trim()) && !cidr(self.split('-')[0].trim() + '/' + ['0','1','2','3','4','5','6','7','8','9','10','11','12','13','14','15','16','17','18','19','20','21','22','23','24','25','26','27','28','29','30','31','32','33','34','35','36','37','38','39','40','41','42','43','44','45','46','47','48','49','50','51','52','53','54','55','56','57','58','59','60','61','62','63','64','65','66','67','68','69','70','71','72','73','74','75','76','77','78','79','80','81','82','83','84','85','86','87','88','89','90','91','92','93','94','95','96','97','98','99','100','101','102','103','104','105','106','107','108','109','110','111','112','113','114','115','116','117','118','119','120','121','122','123','124','125','126','127','128'][i + 1]).containsIP(self.split('-')[1].trim()) && cidr(self.split('-')[0].trim() + '/' + ['0','1','2','3','4','5','6','7','8','9','10','11','12','13','14','15','16','17','18','19','20','21','22','23','24','25','26','27','28','29','30','31','32','33','34','35','36','37','38','39','40','41','42','43','44','45','46','47','48','49','50','51','52','53','54','55','56','57','58','59','60','61','62','63','64','65','66','67','68','69','70','71','72','73','74','75','76','77','78','79','80','81','82','83','84','85','86','87','88','89','90','91','92','93','94','95','96','97','98','99','100','101','102','103','104','105','106','107','108','109','110','111','112','113','114','115','116','117','118','119','120','121','122','123','124','125','126','127','128'][i + 1]).masked().ip() == cidr(self.split('-')[0].trim() + '/' + ['0','1','2','3','4','5','6','7','8','9','10','11','12','13','14','15','16','17','18','19','20','21','22','23','24','25','26','27','28','29','30','31','32','33','34','35','36','37','38','39','40','41','42','43','44','45','46','47','48','49','50','51','52','53','54','55','56','57','58','59','60','61','62','63','64','65','66','67','68','69','70','71','72','73','74','75','76','77','78','79','80','81','82','83','84','85','86','87','88','89','90','91','92','93','94','95','96','97','98','99','100','101','102','103','104','105','106','107','108','109','110','111','112','113','114','115','116','117','118','119','120','121','122','123','124','125','126','127','128'][i]).masked().ip())",messageExpression="'range \"' + self + '\" starts after it ends; write the lower address first'"
type AddressRange string

// IPAddressPoolSpec says which addresses barelb may hand out and to whom.
type IPAddressPoolSpec struct {
	// Addresses are the CIDRs and ranges this pool hands out. A pool may mix
	// IPv4 and IPv6 blocks; each block holds one family. At most 32 blocks,
	// which keeps the API server's validation within its cost budget.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	Addresses []AddressRange `json:"addresses"`

	// AutoAssign lets the controller pick addresses from this pool for
	// Services that name no pool and request no address. With false, the
	// pool serves only Services that ask for it or for one of its addresses.
	// +optional
	// +kubebuilder:default:=true
	AutoAssign *bool `json:"autoAssign,omitempty"`

	// AvoidBuggyIPs skips IPv4 addresses ending in .0 and .255, which some
	// old clients and routers mishandle.
	// +optional
	// +kubebuilder:default:=false
	AvoidBuggyIPs bool `json:"avoidBuggyIPs,omitempty"`

	// ServiceAllocation restricts the pool to some Services and orders it
	// against other pools.
	// +optional
	ServiceAllocation *ServiceAllocation `json:"serviceAllocation,omitempty"`
}

// ServiceAllocation restricts which Services a pool serves and in which
// order pools are tried.
type ServiceAllocation struct {
	// Priority orders pools that admit a Service: lower numbers are tried
	// first; pools without a priority come after all pools with one.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Priority int `json:"priority,omitempty"`

	// Namespaces the pool serves, by name.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +listType=set
	Namespaces []string `json:"namespaces,omitempty"`

	// NamespaceSelectors select the namespaces the pool serves, by label.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	NamespaceSelectors []Selector `json:"namespaceSelectors,omitempty"`

	// ServiceSelectors select the Services the pool serves, by label.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	ServiceSelectors []Selector `json:"serviceSelectors,omitempty"`
}

// IPAddressPoolStatus reports a pool's usage, written by the controller.
// Counts of IPv6 addresses saturate at the largest int64.
type IPAddressPoolStatus struct {
	// AssignedIPv4 is the number of IPv4 addresses in use.
	// +optional
	AssignedIPv4 int64 `json:"assignedIPv4"`
	// AssignedIPv6 is the number of IPv6 addresses in use.
	// +optional
	AssignedIPv6 int64 `json:"assignedIPv6"`
	// AvailableIPv4 is the number of IPv4 addresses still free.
	// +optional
	AvailableIPv4 int64 `json:"availableIPv4"`
	// AvailableIPv6 is the number of IPv6 addresses still free.
	// +optional
	AvailableIPv6 int64 `json:"availableIPv6"`
	// AddressesInForce are the addresses barelb uses for the pool, written
	// by the controller: spec.addresses once they are valid; while an edit
	// is refused (Valid False: an overlap with another pool, overlapping
	// blocks), the last valid ones, so that a refused edit moves no
	// Service, the speakers keep announcing what the controller handed
	// out, and a restarted controller still knows them. Empty when barelb
	// knows no valid definition of the pool.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=83
	// +listType=atomic
	AddressesInForce []string `json:"addressesInForce,omitempty"`
	// Conditions say whether the pool is valid and whether it overlaps
	// another pool.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// IPAddressPool is a set of addresses barelb hands out to LoadBalancer
// Services.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ipp
// +kubebuilder:printcolumn:name="Addresses",type=string,JSONPath=`.spec.addresses`
// +kubebuilder:printcolumn:name="Auto Assign",type=boolean,JSONPath=`.spec.autoAssign`
// +kubebuilder:printcolumn:name="Assigned IPv4",type=integer,JSONPath=`.status.assignedIPv4`
// +kubebuilder:printcolumn:name="Available IPv4",type=integer,JSONPath=`.status.availableIPv4`
// +kubebuilder:printcolumn:name="Assigned IPv6",type=integer,JSONPath=`.status.assignedIPv6`
// +kubebuilder:printcolumn:name="Available IPv6",type=integer,JSONPath=`.status.availableIPv6`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type IPAddressPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   IPAddressPoolSpec   `json:"spec"`
	Status IPAddressPoolStatus `json:"status,omitempty"`
}

// IPAddressPoolList is a list of IPAddressPool.
//
// +kubebuilder:object:root=true
type IPAddressPoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []IPAddressPool `json:"items"`
}

func init() {
	SchemeBuilder.Register(&IPAddressPool{}, &IPAddressPoolList{})
}
