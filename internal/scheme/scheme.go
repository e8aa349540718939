// Package scheme builds the runtime.Scheme barelb's programs and tests use:
// client-go's built-in types and barelb.io/v1beta1.
package scheme

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	barelbv1beta1 "github.com/barelb/barelb/api/v1beta1"
)

// New returns a scheme with client-go's built-in types and barelb's.
func New() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("adding built-in types to the scheme: %w", err)
	}
	if err := barelbv1beta1.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("adding barelb types to the scheme: %w", err)
	}
	return s, nil
}
