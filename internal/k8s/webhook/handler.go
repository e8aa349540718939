package webhook

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
	decide "github.com/barelb/barelb/internal/admission"
	"github.com/barelb/barelb/internal/config"
)

// Validator answers admission requests for barelb's configuration kinds:
// it reads what the decision needs, calls internal/admission, and turns
// the verdict into a response.
type Validator struct {
	// Namespace is barelb's namespace; objects elsewhere are allowed
	// without a look (barelb ignores them and says so on the object).
	Namespace string
	// Reader reads pools, peers and Services (the manager's cache).
	Reader client.Reader
	// Writer makes the dry-run create that tells whether a Secret exists
	// without reading it.
	Writer  client.Writer
	Decoder admission.Decoder
	Log     logr.Logger
}

var _ admission.Handler = &Validator{}

// Handle implements admission.Handler.
func (v *Validator) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Namespace != v.Namespace {
		return admission.Allowed("not in barelb's namespace " + v.Namespace + "; barelb ignores it")
	}
	if req.Kind.Group != barelbv1beta1.GroupVersion.Group {
		return admission.Allowed("not a barelb kind")
	}
	var verdict decide.Verdict
	var err error
	switch req.Kind.Kind {
	case "IPAddressPool":
		verdict, err = v.pool(ctx, req)
	case "L2Advertisement":
		verdict, err = v.l2Advertisement(ctx, req)
	case "BGPAdvertisement":
		verdict, err = v.bgpAdvertisement(ctx, req)
	case "BGPPeer":
		verdict, err = v.bgpPeer(ctx, req)
	default:
		return admission.Allowed("barelb's webhook has no rules for " + req.Kind.Kind)
	}
	if err != nil {
		if apierrors.IsBadRequest(err) {
			return admission.Errored(http.StatusBadRequest, err)
		}
		// A read failed: answer as failurePolicy Ignore would, and say so.
		v.Log.Error(err, "admission checks skipped", "kind", req.Kind.Kind, "name", req.Name)
		return admission.Allowed("").WithWarnings("barelb could not run its cross-object checks: " + err.Error())
	}
	resp := admission.Allowed("")
	if !verdict.Allowed() {
		resp = admission.Denied(joinDenials(verdict.Denials))
	}
	return resp.WithWarnings(verdict.Warnings...)
}

func joinDenials(ds []string) string {
	out := ds[0]
	for _, d := range ds[1:] {
		out += "; " + d
	}
	return out
}

// decode reads the request's object; a failure is the caller's fault.
func (v *Validator) decode(req admission.Request, into runtime.Object) error {
	if err := v.Decoder.Decode(req, into); err != nil {
		return apierrors.NewBadRequest(fmt.Sprintf("decoding the %s: %v", req.Kind.Kind, err))
	}
	return nil
}

// decodeOld reads the object before an update; false when there is none
// (a create) or it cannot be read.
func (v *Validator) decodeOld(req admission.Request, into runtime.Object) bool {
	if len(req.OldObject.Raw) == 0 {
		return false
	}
	return v.Decoder.DecodeRaw(req.OldObject, into) == nil
}

// invalid denies an object the config parsers refuse. The API server's
// rules refuse the same objects, so this is reached only by objects that
// bypass them.
func invalid(err error) decide.Verdict {
	return decide.Verdict{Denials: []string{err.Error()}}
}

func (v *Validator) pool(ctx context.Context, req admission.Request) (decide.Verdict, error) {
	var obj barelbv1beta1.IPAddressPool
	if err := v.decode(req, &obj); err != nil {
		return decide.Verdict{}, err
	}
	pool, err := config.PoolFromAPI(&obj)
	if err != nil {
		return invalid(err), nil
	}
	var old *config.Pool
	var oldObj barelbv1beta1.IPAddressPool
	if v.decodeOld(req, &oldObj) {
		old, _ = config.PoolFromAPI(&oldObj) // an old object that does not parse counts as none
	}
	var list barelbv1beta1.IPAddressPoolList
	if err := v.Reader.List(ctx, &list, client.InNamespace(v.Namespace)); err != nil {
		return decide.Verdict{}, fmt.Errorf("listing IPAddressPools: %w", err)
	}
	var others []*config.Pool
	for i := range list.Items {
		if other, err := config.PoolFromAPI(&list.Items[i]); err == nil {
			others = append(others, other)
		}
	}
	var assigned []decide.Assignment
	if req.Operation != "CREATE" {
		var services corev1.ServiceList
		if err := v.Reader.List(ctx, &services); err != nil {
			return decide.Verdict{}, fmt.Errorf("listing Services: %w", err)
		}
		for i := range services.Items {
			svc := &services.Items[i]
			if svc.Annotations[config.AnnotationAllocatedFromPool] != obj.Name {
				continue
			}
			a := decide.Assignment{Service: svc.Namespace + "/" + svc.Name}
			for _, in := range svc.Status.LoadBalancer.Ingress {
				if ip, err := netip.ParseAddr(in.IP); err == nil {
					a.Addresses = append(a.Addresses, ip)
				}
			}
			assigned = append(assigned, a)
		}
	}
	return decide.CheckPool(pool, old, others, assigned), nil
}

func (v *Validator) poolNames(ctx context.Context) (map[string]bool, error) {
	var pools barelbv1beta1.IPAddressPoolList
	if err := v.Reader.List(ctx, &pools, client.InNamespace(v.Namespace)); err != nil {
		return nil, fmt.Errorf("listing IPAddressPools: %w", err)
	}
	names := make(map[string]bool, len(pools.Items))
	for _, p := range pools.Items {
		names[p.Name] = true
	}
	return names, nil
}

func (v *Validator) l2Advertisement(ctx context.Context, req admission.Request) (decide.Verdict, error) {
	var obj barelbv1beta1.L2Advertisement
	if err := v.decode(req, &obj); err != nil {
		return decide.Verdict{}, err
	}
	if _, err := config.L2AdvertisementFromAPI(&obj); err != nil {
		return invalid(err), nil
	}
	pools, err := v.poolNames(ctx)
	if err != nil {
		return decide.Verdict{}, err
	}
	return decide.CheckAdvertisement(obj.Spec.IPAddressPools, nil, pools, nil), nil
}

func (v *Validator) bgpAdvertisement(ctx context.Context, req admission.Request) (decide.Verdict, error) {
	var obj barelbv1beta1.BGPAdvertisement
	if err := v.decode(req, &obj); err != nil {
		return decide.Verdict{}, err
	}
	pools, err := v.poolNames(ctx)
	if err != nil {
		return decide.Verdict{}, err
	}
	var peers barelbv1beta1.BGPPeerList
	if err := v.Reader.List(ctx, &peers, client.InNamespace(v.Namespace)); err != nil {
		return decide.Verdict{}, fmt.Errorf("listing BGPPeers: %w", err)
	}
	peerNames := make(map[string]bool, len(peers.Items))
	for _, p := range peers.Items {
		peerNames[p.Name] = true
	}
	return decide.CheckAdvertisement(obj.Spec.IPAddressPools, obj.Spec.Peers, pools, peerNames), nil
}

func (v *Validator) bgpPeer(ctx context.Context, req admission.Request) (decide.Verdict, error) {
	var obj barelbv1beta1.BGPPeer
	if err := v.decode(req, &obj); err != nil {
		return decide.Verdict{}, err
	}
	peer, err := config.BGPPeerFromAPI(&obj, config.BGPPeerOptions{})
	if err != nil {
		return invalid(err), nil
	}
	var old *config.BGPPeer
	var oldObj barelbv1beta1.BGPPeer
	if v.decodeOld(req, &oldObj) {
		old, _ = config.BGPPeerFromAPI(&oldObj, config.BGPPeerOptions{})
	}
	var list barelbv1beta1.BGPPeerList
	if err := v.Reader.List(ctx, &list, client.InNamespace(v.Namespace)); err != nil {
		return decide.Verdict{}, fmt.Errorf("listing BGPPeers: %w", err)
	}
	var others []*config.BGPPeer
	for i := range list.Items {
		if other, err := config.BGPPeerFromAPI(&list.Items[i], config.BGPPeerOptions{}); err == nil {
			others = append(others, other)
		}
	}
	secretExists := true
	if ref := peer.PasswordSecret; ref != nil {
		if secretExists, err = v.secretExists(ctx, ref.Namespace, ref.Name); err != nil {
			return decide.Verdict{}, err
		}
	}
	return decide.CheckBGPPeer(peer, old, others, secretExists), nil
}

// secretExists tells whether a Secret exists by creating it in dry-run:
// the API server answers AlreadyExists if it does and runs no write in any
// case. This needs only the create permission the controller has anyway;
// reading Secrets, which would expose their contents, is not granted.
func (v *Validator) secretExists(ctx context.Context, namespace, name string) (bool, error) {
	probe := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Type:       corev1.SecretTypeOpaque,
	}
	err := v.Writer.Create(ctx, probe, client.DryRunAll)
	switch {
	case err == nil:
		return false, nil
	case apierrors.IsAlreadyExists(err):
		return true, nil
	default:
		return false, fmt.Errorf("telling whether Secret %s/%s exists: %w", namespace, name, err)
	}
}
