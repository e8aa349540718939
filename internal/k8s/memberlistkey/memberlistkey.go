package memberlistkey

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// DataKey is the key of the Secret's data that holds the memberlist key.
const DataKey = "secretkey"

// DefaultSecretName is the Secret the install manifests point the speakers
// at.
const DefaultSecretName = "barelb-memberlist"

// Ensure creates the Secret namespace/name with a random key unless it
// exists. It reads with reader (a direct API reader: a cached client would
// list and watch every Secret, which the controller may not and need not
// do) and creates with writer. created tells whether this call made it.
// Replicas racing at first start are fine: one create wins, the others
// find it exists.
func Ensure(ctx context.Context, reader client.Reader, writer client.Writer, namespace, name string, log logr.Logger) (created bool, err error) {
	var existing corev1.Secret
	err = reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &existing)
	if err == nil {
		if len(existing.Data[DataKey]) == 0 {
			log.Info("WARNING: the memberlist Secret has no key; speakers gossip unencrypted", "secret", namespace+"/"+name, "dataKey", DataKey)
		}
		return false, nil
	}
	if !apierrors.IsNotFound(err) {
		return false, fmt.Errorf("reading the memberlist Secret %s/%s: %w", namespace, name, err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return false, fmt.Errorf("generating a memberlist key: %w", err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: map[string]string{
			"app.kubernetes.io/name": "barelb", "app.kubernetes.io/component": "speaker",
		}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{DataKey: []byte(base64.StdEncoding.EncodeToString(raw))},
	}
	if err := writer.Create(ctx, secret); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return false, nil
		}
		return false, fmt.Errorf("creating the memberlist Secret %s/%s: %w", namespace, name, err)
	}
	log.Info("Created the memberlist Secret with a random key", "secret", namespace+"/"+name)
	return true, nil
}
