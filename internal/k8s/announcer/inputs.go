// Package announcer is the speaker's Kubernetes glue for layer-2 mode: it
// reads Services, EndpointSlices, Nodes, pools and L2Advertisements, asks
// internal/election which node announces each address, makes this node's
// responders answer for the addresses it won, and reports that in
// ServiceL2Status objects and Events.
package announcer

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	"github.com/barelb/barelb/internal/config"
	"github.com/barelb/barelb/internal/election"
)

// ExcludeLabel keeps a node out of external load balancing, as for cloud
// load balancers.
const ExcludeLabel = "node.kubernetes.io/exclude-from-external-load-balancers"

// inputs is everything the plan is computed from, read from the cache.
type inputs struct {
	services []election.L2Service
	byKey    map[string]*corev1.Service
	pools    map[string]*config.Pool
	advs     []*config.L2Advertisement
	nodes    []election.L2Node
}

// read gathers the plan's inputs. alive names the live speakers; ok is
// false when membership is unavailable, and node readiness stands in.
func read(ctx context.Context, c client.Reader, namespace, lbClass string, alive map[string]bool, membershipOK bool) (*inputs, error) {
	in := &inputs{byKey: map[string]*corev1.Service{}, pools: map[string]*config.Pool{}}

	var poolList barelbv1beta1.IPAddressPoolList
	if err := c.List(ctx, &poolList, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing IPAddressPools: %w", err)
	}
	for i := range poolList.Items {
		if p, err := config.PoolFromAPI(&poolList.Items[i]); err == nil {
			in.pools[p.Name] = p
		}
	}
	var advList barelbv1beta1.L2AdvertisementList
	if err := c.List(ctx, &advList, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing L2Advertisements: %w", err)
	}
	for i := range advList.Items {
		if a, err := config.L2AdvertisementFromAPI(&advList.Items[i]); err == nil {
			in.advs = append(in.advs, a)
		}
	}

	var nodeList corev1.NodeList
	if err := c.List(ctx, &nodeList); err != nil {
		return nil, fmt.Errorf("listing Nodes: %w", err)
	}
	for i := range nodeList.Items {
		n := &nodeList.Items[i]
		_, excluded := n.Labels[ExcludeLabel]
		isAlive := alive[n.Name]
		if !membershipOK {
			isAlive = condition(n, corev1.NodeReady) == corev1.ConditionTrue
		}
		in.nodes = append(in.nodes, election.L2Node{
			Name:     n.Name,
			Labels:   labels.Set(n.Labels),
			Alive:    isAlive,
			Excluded: excluded || condition(n, corev1.NodeNetworkUnavailable) == corev1.ConditionTrue,
		})
	}

	var svcList corev1.ServiceList
	if err := c.List(ctx, &svcList); err != nil {
		return nil, fmt.Errorf("listing Services: %w", err)
	}
	for i := range svcList.Items {
		svc := &svcList.Items[i]
		pool := svc.Annotations[config.AnnotationAllocatedFromPool]
		if !config.ServesService(svc, lbClass) || pool == "" {
			continue
		}
		s := election.L2Service{
			Key:          client.ObjectKeyFromObject(svc).String(),
			Labels:       labels.Set(svc.Labels),
			Pool:         pool,
			LocalTraffic: svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
		}
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			if ip, err := netip.ParseAddr(ing.IP); err == nil {
				s.Addresses = append(s.Addresses, ip)
			}
		}
		if len(s.Addresses) == 0 {
			continue
		}
		if s.LocalTraffic {
			nodes, err := endpointNodes(ctx, c, svc)
			if err != nil {
				return nil, err
			}
			s.EndpointNodes = nodes
		}
		in.services = append(in.services, s)
		in.byKey[s.Key] = svc
	}
	return in, nil
}

// endpointNodes names the nodes with a ready endpoint of the Service.
func endpointNodes(ctx context.Context, c client.Reader, svc *corev1.Service) (map[string]bool, error) {
	var slices discoveryv1.EndpointSliceList
	if err := c.List(ctx, &slices, client.InNamespace(svc.Namespace), client.MatchingLabels{discoveryv1.LabelServiceName: svc.Name}); err != nil {
		return nil, fmt.Errorf("listing EndpointSlices of %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	out := map[string]bool{}
	for _, slice := range slices.Items {
		for _, ep := range slice.Endpoints {
			if ep.NodeName != nil && (ep.Conditions.Ready == nil || *ep.Conditions.Ready) {
				out[*ep.NodeName] = true
			}
		}
	}
	return out, nil
}

func condition(n *corev1.Node, t corev1.NodeConditionType) corev1.ConditionStatus {
	for _, c := range n.Status.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return corev1.ConditionUnknown
}
