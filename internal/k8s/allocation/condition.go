package allocation

import (
	"fmt"
	"net/netip"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/k8s/servicecondition"
)

// addressCondition is what the Service's barelb.io/AddressAssigned
// condition says after a decision: True with the addresses and their
// pool, or False with the same reason and message as the Warning Event.
// A Service that keeps an address while its request fails (an unreadable
// annotation, a refused pool) is False too, and the message says what it
// keeps; a dual-stack Service that prefers but does not require both
// families and got one is True, IPAllocatedPartially.
func addressCondition(addrs []netip.Addr, pool string, f *failure) servicecondition.Want {
	switch {
	case f == nil && len(addrs) > 0:
		return servicecondition.Want{Status: metav1.ConditionTrue, Reason: barelbv1beta1.AddressReasonAssigned,
			Message: fmt.Sprintf("assigned %s from pool %s", addressList(addrs), pool)}
	case f == nil:
		// Every decision either gives an address or says why not; this is
		// a Service whose request names no family at all.
		return servicecondition.Want{Status: metav1.ConditionFalse, Reason: ReasonInvalidRequest, Message: "the Service asks for no address family"}
	case len(addrs) > 0 && (f.Reason == ReasonFamilyUnavailable || f.Reason == ReasonPoolExhausted):
		return servicecondition.Want{Status: metav1.ConditionTrue, Reason: barelbv1beta1.AddressReasonPartial,
			Message: fmt.Sprintf("assigned %s from pool %s; the other family: %s: %s", addressList(addrs), pool, f.Reason, f.Message)}
	case len(addrs) > 0:
		return servicecondition.Want{Status: metav1.ConditionFalse, Reason: f.Reason,
			Message: fmt.Sprintf("%s; it keeps %s (pool %s) meanwhile", f.Message, addressList(addrs), pool)}
	default:
		return servicecondition.Want{Status: metav1.ConditionFalse, Reason: f.Reason, Message: f.Message}
	}
}
